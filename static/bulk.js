// bulk: the dashboard's selection of stacks for one mode change (templates/dashboard/_bulk_bar.html).
// The selection lives here, not in the checkboxes: a live push replaces a row, and its new checkbox
// is checked again from it. No inline script: there is a CSP.
(function () {
  "use strict";

  var selected = new Set();  // deployment ids (strings)

  function boxes() {
    return Array.prototype.slice.call(document.querySelectorAll("input.bulk-select"));
  }

  // The folded "N stacks without containers" (templates/dashboard/_list.html) after one left it: a
  // forgotten stack's slot is deleted by a push, and no other answer says the new count.
  function recountFolded() {
    var folded = document.getElementById("without-containers");
    if (!folded) return;
    var count = folded.querySelectorAll("tbody[id^='slot-']").length;
    if (!count) {
      folded.remove();
      return;
    }
    var summary = folded.querySelector("summary");
    var text = count + (count === 1 ? " stack" : " stacks") + " without containers";
    if (summary && /^\d+ stacks? without containers$/.test(summary.textContent.trim())) summary.textContent = text;
  }

  function sync() {
    recountFolded();
    clearAfterResults();
    var present = new Set();
    boxes().forEach(function (box) {
      present.add(box.value);
      box.checked = selected.has(box.value);
    });
    // A stack whose row left the page (forgotten, or another environment shown) is no longer selected.
    selected.forEach(function (id) { if (!present.has(id)) selected.delete(id); });
    var bar = document.getElementById("bulk-form");
    if (!bar) return;
    bar.hidden = selected.size === 0;
    var count = document.getElementById("bulk-count");
    if (count) count.textContent = selected.size + " selected";
  }

  function clear() {
    selected.clear();
    sync();
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.classList || !box.classList.contains("bulk-select")) return;
    if (box.checked) selected.add(box.value); else selected.delete(box.value);
    sync();
  });

  document.addEventListener("click", function (event) {
    if (!event.target.closest) return;
    if (event.target.closest("[data-bulk-clear]")) clear();
    if (event.target.closest("[data-bulk-close]")) {
      var panel = document.getElementById("bulk-panel");
      if (panel) panel.replaceChildren();
    }
    var notice = event.target.closest("[data-dismiss-notice]");
    if (notice && notice.closest(".stack-notice")) notice.closest(".stack-notice").remove();
  });

  // Results arrived: the change was asked for, and each selected stack now shows its own progress
  // and result in its row. Cleared once per answer (a later settle of the same results does not).
  function clearAfterResults() {
    var results = document.querySelector("#bulk-panel .bulk-result:not([data-seen])");
    if (!results) return;
    results.dataset.seen = "true";
    selected.clear();
  }

  ["htmx:afterSettle", "htmx:oobAfterSwap", "htmx:wsAfterMessage"].forEach(function (name) {
    document.addEventListener(name, sync);
  });
})();
