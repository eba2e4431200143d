// flow: the mode-change confirmation (focus on Reason when it opens, Escape closes it), the admin
// pages' ask-first confirmations, the copy button of a new token. No inline script: there is a CSP.
(function () {
  "use strict";

  // -- the mode-change confirmation ----------------------------------------------------------------

  var opener = null;  // the button that opened the confirmation, to give focus back on close

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt && elt.closest && elt.closest(".mode-actions")) opener = elt;
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    var form = target && target.querySelector ? target.querySelector("[data-confirm-form]") : null;
    if (!form) return;
    var reason = form.querySelector("[name=reason]");
    if (reason) reason.focus();
  });

  function openConfirmation(from) {
    var inside = from && from.closest ? from.closest("[data-confirm-form]") : null;
    if (inside) return inside;
    var open = document.querySelectorAll("[data-confirm-form]");
    // Focus outside any confirmation (the page itself): Escape closes the only one open.
    var onPage = !from || from === document.body || from === document.documentElement;
    return onPage && open.length === 1 ? open[0] : null;
  }

  function closeConfirmation(form) {
    var region = form.parentElement;
    form.remove();
    if (opener && document.body.contains(opener)) {
      opener.focus();
    } else if (region) {
      var row = region.closest("[id^=slot-]") || document;
      var button = row.querySelector(".mode-actions button");
      if (button) button.focus();
    }
    opener = null;
  }

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || event.defaultPrevented) return;
    var form = openConfirmation(document.activeElement);
    if (!form) return;
    event.preventDefault();
    closeConfirmation(form);
  });

  // -- ask first: deleting a user, revoking a token (a modal <dialog>; Escape and Cancel close it) -----

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-opens]") : null;
    if (!button) return;
    var dialog = document.getElementById(button.getAttribute("data-opens"));
    if (!dialog || typeof dialog.showModal !== "function") return;
    dialog.showModal();
    // The safe choice has the focus: Enter on an accidental open cancels.
    var cancel = dialog.querySelector(".cancel");
    if (cancel) cancel.focus();
  });

  // -- the copy button of a new token -----------------------------------------------------------------

  function say(button, text) {
    var status = button.parentElement.querySelector(".copy-status");
    if (status) status.textContent = text;
  }

  function selectField(field, button) {
    // No Clipboard API (plain http on another host) or it was refused: the field is selected instead.
    field.focus();
    field.select();
    say(button, "Selected: press Ctrl+C (⌘C) to copy");
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy]") : null;
    if (!button) return;
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) return;
    if (!navigator.clipboard || !window.isSecureContext) {
      selectField(field, button);
      return;
    }
    navigator.clipboard.writeText(field.value).then(function () {
      say(button, "✓ Copied");
    }, function () {
      selectField(field, button);
    });
  });
})();
