// gatehouse admin UI: live updates without a front-end framework.
//
// Elements marked data-live (with an id) are refreshed every few seconds by
// fetching the page again and swapping them for their new versions. The
// server renders everything; this only keeps it current. Refreshing pauses
// while the tab is hidden or while a control inside a live part has focus.
(function () {
  "use strict";
  var every = 3000;

  function refresh() {
    var live = document.querySelectorAll("[data-live]");
    if (live.length === 0 || document.hidden) return;
    var active = document.activeElement;
    for (var i = 0; i < live.length; i++) {
      if (live[i].contains(active) && active !== document.body) return;
    }
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || r.status === 401) { location.href = "/login"; return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) el.replaceWith(document.importNode(fresh, true));
        });
      })
      .catch(function () { /* the next tick tries again */ });
  }
  setInterval(refresh, every);

  // The dashboard's traffic chart (uPlot, vendored in /static/uplot):
  // forwarded, refused and blocked over the last hour or day, from
  // /api/traffic, redrawn every few seconds.
  var chartBox = document.getElementById("traffic-chart");
  // The chart's times are in the browser's zone: name it.
  var zoneNote = document.getElementById("traffic-zone");
  if (zoneNote && window.Intl) {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone) zoneNote.textContent = zone;
  }
  if (chartBox && window.uPlot) {
    var chart = null, drawnRange = null;
    var sel = function (id) { return document.getElementById(id); };
    var width = function () { return Math.max(300, chartBox.clientWidth || 800); };
    var draw = function () {
      if (document.hidden) return;
      var range = sel("traffic-range").value;
      var q = "range=" + encodeURIComponent(range) +
        "&service=" + encodeURIComponent(sel("traffic-service").value) +
        "&type=" + encodeURIComponent(sel("traffic-type").value);
      fetch("/api/traffic?" + q, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (t) {
          if (!t) return;
          var start = Date.parse(t.start) / 1000, xs = [];
          for (var i = 0; i < t.total.forwarded.length; i++) xs.push(start + i * t.step_seconds);
          var data = [xs, t.total.forwarded, t.total.refused, t.total.blocked];
          var sum = function (a) { var n = 0; for (var j = 0; j < a.length; j++) n += a[j]; return n; };
          // What the chart shows, for a glance (and the browser test).
          chartBox.setAttribute("data-forwarded", String(sum(t.total.forwarded)));
          chartBox.setAttribute("data-refused", String(sum(t.total.refused)));
          chartBox.setAttribute("data-blocked", String(sum(t.total.blocked)));
          if (chart && drawnRange === range) { chart.setData(data); return; }
          if (chart) chart.destroy();
          drawnRange = range;
          var per = t.step_seconds === 1 ? "per second" : "per minute";
          chart = new uPlot({
            width: width(), height: 240,
            scales: { x: { time: true } },
            axes: [{}, { label: "requests " + per }],
            series: [
              {},
              { label: "forwarded", stroke: "#2e7d32", width: 1 },
              { label: "refused", stroke: "#e65100", width: 1 },
              { label: "blocked", stroke: "#c62828", width: 1 }
            ]
          }, data, chartBox);
          chartBox.setAttribute("data-points", String(xs.length));
        })
        .catch(function () { /* the next tick tries again */ });
    };
    ["traffic-range", "traffic-service", "traffic-type"].forEach(function (id) {
      sel(id).addEventListener("change", draw);
    });
    window.addEventListener("resize", function () { if (chart) chart.setSize({ width: width(), height: 240 }); });
    draw();
    setInterval(draw, 5000);
  }

  // The configuration page: line numbers beside the editor, kept in step
  // with its text and its scrolling; a problem's "line N" selects that line.
  var editor = document.getElementById("config"), gutter = document.getElementById("config-lines");
  if (editor && gutter) {
    var number = function () {
      var n = editor.value.split("\n").length, s = "";
      for (var i = 1; i <= n; i++) s += i + "\n";
      gutter.textContent = s;
      gutter.scrollTop = editor.scrollTop;
    };
    editor.addEventListener("input", number);
    editor.addEventListener("scroll", function () { gutter.scrollTop = editor.scrollTop; });
    number();
    document.querySelectorAll(".goto-line").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        var line = parseInt(a.getAttribute("data-line"), 10), lines = editor.value.split("\n"), start = 0;
        for (var i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
        editor.focus();
        editor.setSelectionRange(start, start + (lines[line - 1] || "").length);
        var lh = editor.scrollHeight / Math.max(1, lines.length);
        editor.scrollTop = Math.max(0, (line - 5) * lh);
      });
    });
  }

  // The configuration page: load a chosen file into the editor.
  var file = document.getElementById("config-file");
  if (file) {
    file.addEventListener("change", function () {
      var f = file.files[0];
      if (!f) return;
      var reader = new FileReader();
      reader.onload = function () {
        var ed = document.getElementById("config");
        ed.value = reader.result;
        ed.dispatchEvent(new Event("input")); // renumber the lines
      };
      reader.readAsText(f);
    });
  }
})();
