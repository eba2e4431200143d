// overview: the dashboard's search shortcut and its filtered view under live pushes (README "The dashboard").
(function () {
  "use strict";

  // "/" anywhere on the dashboard, outside a field, focuses the search (as on GitHub or Uptime Kuma).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
    var target = event.target;
    if (target.isContentEditable || (target.closest && target.closest("input, textarea, select"))) return;
    var search = document.getElementById("dashboard-search");
    if (!search) return;
    event.preventDefault();
    search.focus();
    search.select();
  });

  // A live push replaces a row in place (or adds a new stack at its environment's end). With a filter or
  // a search active that is not enough: a stack that leaves Failed must leave the "Failed" view, one that
  // enters it must appear, and a new stack may not match. Only the server knows what matches (one
  // definition of "needs attention", "overdue", the search), so the page asks it for the list region
  // again instead of judging pushed rows itself. At most one request per REFETCH_MS whatever the rate of
  // pushes, and it starts after the pushes that caused it, so it includes them. Without a filter rows stay
  // where they are: nothing moves under the pointer; the order (who needs a person first) applies on load.
  // A search or a count clicked meanwhile is never overwritten by an older view: while a request for
  // the list is under way the refresh waits for it to end (the search and the counts abort an older
  // request for the list themselves: hx-sync), then asks for the view the page shows by then.
  var REFETCH_MS = 400;
  var pending = null;
  var requests = [];
  function listRequestUnderway() {
    requests = requests.filter(function (xhr) { return xhr.readyState > 0 && xhr.readyState < 4; });
    return requests.length > 0;
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    var target = event.detail.target;
    if (target && target.id === "deployment-list") requests.push(event.detail.xhr);
  });
  function refreshSoon() {
    pending = window.setTimeout(function () {
      if (listRequestUnderway()) {
        refreshSoon();
        return;
      }
      pending = null;
      var current = document.getElementById("deployment-list");
      if (current && current.hasAttribute("data-filtered")) htmx.trigger(current, "rsgo:refresh");
    }, REFETCH_MS);
  }
  document.addEventListener("htmx:wsAfterMessage", function () {
    var region = document.getElementById("deployment-list");
    if (region && region.hasAttribute("data-filtered") && !pending) refreshSoon();
  });
})();
