// Times in the browser's time zone (README "The dashboard", Timelines and times). The server renders
// every time through the `when` macro as <time datetime="UTC"> with a UTC fallback text; this shows it
// as local absolute time plus a relative one ("14:02 (29 min ago)"), with UTC in the title on hover.
// <time data-duration> shows how long since ("2 h 14 min"); a timeline segment's tooltip gets its
// from–to in local time. Again after every HTMX swap and websocket push, and every 30 s.
(function () {
  "use strict";

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function day(d) { return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()); }
  function clock(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()); }

  // The same words as the server's (rsgo/overdue.py duration_text): "6 h 12 min", "12 min", "40 s".
  function span(seconds) {
    seconds = Math.floor(Math.abs(seconds));
    if (seconds >= 3600) return Math.floor(seconds / 3600) + " h " + Math.floor(seconds % 3600 / 60) + " min";
    return seconds >= 60 ? Math.floor(seconds / 60) + " min" : seconds + " s";
  }

  function absolute(d, now) { return (day(d) === day(now) ? "" : day(d) + " ") + clock(d); }

  function relative(d, now) {
    var seconds = (now - d) / 1000;
    if (Math.abs(seconds) < 30) return "just now";
    return seconds > 0 ? span(seconds) + " ago" : "in " + span(seconds);
  }

  function utc(d) { return d.toISOString().slice(0, 19).replace("T", " ") + " UTC"; }

  function zone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time"; } catch (e) { return "local time"; }
  }

  function parse(text) {
    var d = text ? new Date(text) : null;
    return d && !isNaN(d.getTime()) ? d : null;
  }

  function renderTimes(root, now, tz) {
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var el = times[i];
      var d = parse(el.getAttribute("datetime"));
      if (!d) continue;
      if (el.hasAttribute("data-duration")) {
        el.textContent = span((now - d) / 1000);
        el.title = "since " + utc(d);
      } else {
        el.textContent = absolute(d, now) + (el.hasAttribute("data-relative") ? " (" + relative(d, now) + ")" : "");
        el.title = utc(d) + " (shown in " + tz + ")";
      }
    }
  }

  function renderSegments(root, now) {
    var segments = root.querySelectorAll("g.tl-seg[data-from]");
    for (var i = 0; i < segments.length; i++) {
      var g = segments[i];
      var title = g.querySelector("title");
      var from = parse(g.getAttribute("data-from"));
      if (!title || !from) continue;
      var to = parse(g.getAttribute("data-to"));
      var start = (g.hasAttribute("data-from-unknown") ? "before " : "") + absolute(from, now);
      title.textContent = g.getAttribute("data-mode") + " · " + start + " – " + (to ? absolute(to, now) : "now") +
        " (" + span(((to || now) - from) / 1000) + ") · " + g.getAttribute("data-who");
    }
  }

  function render() {
    var now = new Date();
    renderTimes(document, now, zone());
    renderSegments(document, now);
  }

  // Swaps come in bursts (a push carries many fragments): one render after the burst.
  var pending = false;
  function soon() {
    if (pending) return;
    pending = true;
    setTimeout(function () { pending = false; render(); }, 0);
  }

  document.addEventListener("DOMContentLoaded", render);
  document.addEventListener("htmx:afterSwap", soon);
  document.addEventListener("htmx:oobAfterSwap", soon);
  document.addEventListener("htmx:afterSettle", soon);
  setInterval(render, 30000);
  if (document.readyState !== "loading") render();
})();
