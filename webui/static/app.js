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

  // The configuration page: load a chosen file into the editor.
  var file = document.getElementById("config-file");
  if (file) {
    file.addEventListener("change", function () {
      var f = file.files[0];
      if (!f) return;
      var reader = new FileReader();
      reader.onload = function () { document.getElementById("config").value = reader.result; };
      reader.readAsText(f);
    });
  }
})();
