// rsgo's only script (no inline script anywhere, so a strict CSP can forbid it):
// the live-connection indicator, re-fetching live regions after a reconnect, dismiss buttons.
(function () {
  "use strict";

  // Reconnect soon after a restart of rsgo: exponential backoff with jitter, capped at 5 s.
  htmx.config.wsReconnectDelay = function (retries) {
    return Math.min(5000, 250 * Math.pow(2, retries)) * (0.5 + Math.random() / 2);
  };


  function showStatus(state, text) {
    var indicator = document.getElementById("live-status");
    if (indicator) {
      indicator.dataset.state = state;
      indicator.textContent = text;
    }
  }

  document.addEventListener("htmx:wsOpen", function () {
    // Whatever changed while we were not connected was never pushed to us: after a reconnect, and
    // also between rendering this page and the first connection. So fetch every live region anew,
    // and say "Live" only once they are all current.
    var regions = Array.prototype.slice.call(document.querySelectorAll("[data-live-region]"));
    var pending = regions.slice();
    if (!pending.length) {
      showStatus("live", "Live");
      return;
    }
    showStatus("syncing", "Updating…");
    // Counted when the answer arrives, before the swap: an outerHTML swap detaches the region, and
    // events of a detached element never reach the document.
    // A push that replaces a region while its request is out makes it current too; htmx then drops
    // that request's answer (no beforeOnLoad ever comes), so the replacement counts as its answer.
    var doneEvents = ["htmx:beforeOnLoad", "htmx:sendError", "htmx:beforeCleanupElement"];
    function regionDone(event) {
      var index = pending.indexOf(event.detail.elt);
      if (index < 0) return;
      pending.splice(index, 1);
      if (!pending.length) {
        doneEvents.forEach(function (name) { document.removeEventListener(name, regionDone); });
        showStatus("live", "Live");
      }
    }
    doneEvents.forEach(function (name) { document.addEventListener(name, regionDone); });
    regions.forEach(function (region) {
      htmx.trigger(region, "rsgo:refresh");
    });
  });

  document.addEventListener("htmx:wsClose", function () {
    showStatus("offline", "Offline, reconnecting…");
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-dismiss]");
    if (button) {
      var problem = button.closest(".problem");
      if (problem) problem.remove();
    }
  });
})();
