// Appended to a copy of report.html by report_glance.rs: measures what a
// reader sees once the report's own script has run, and leaves it as JSON
// in <pre id="probe-result"> for the test to read from the dumped DOM.
(function () {
  "use strict";
  var res = {};
  function rect(el) {
    var r = el.getBoundingClientRect();
    return { left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height };
  }
  // Rendered with a size, not hidden, and not inside a closed <details>.
  function visible(el) {
    if (!el) return false;
    var r = el.getBoundingClientRect(), s = getComputedStyle(el);
    if (r.width <= 0 || r.height <= 0 || s.visibility === "hidden" || s.display === "none") return false;
    for (var p = el.parentElement; p; p = p.parentElement) {
      if (p.tagName === "DETAILS" && !p.open && el.closest("summary") === null) return false;
    }
    return true;
  }
  function all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  res.height = document.documentElement.scrollHeight;
  res.nav = all("#nav a").map(function (a) {
    var href = a.getAttribute("href");
    return { href: href, target: !!document.querySelector(href), visible: visible(a) };
  });
  window.scrollTo(0, res.height);
  var nav = document.getElementById("nav").getBoundingClientRect();
  res.nav_at_bottom = { top: nav.top, bottom: nav.bottom, scroll_y: window.scrollY };
  window.scrollTo(0, 0);

  res.legends = {};
  ["tl-legend", "plot-legend", "roles-legend", "lag-legend"].forEach(function (id) {
    res.legends[id] = visible(document.getElementById(id));
  });
  res.band_names = all(".tl-band-name").filter(visible).map(function (e) { return e.textContent; });
  res.svg_band_names = all("#plots text.band-name").filter(visible).map(function (e) { return e.textContent; });
  res.lane_labels = JSON.parse(document.getElementById("timeline-data").textContent).lane_names.length;

  var settings = document.getElementById("settings");
  res.settings_text = visible(settings) ? settings.innerText : "";
  res.rerun_visible = visible(document.querySelector("pre.rerun"));
  var more = document.getElementById("settings-more");
  res.settings_more = {
    exists: !!more, open: !!(more && more.open),
    summary_visible: visible(more && more.querySelector("summary")),
    table_visible: visible(more && more.querySelector("table")),
    rows: more ? all("tr", more).length : 0
  };
  res.summary_text = document.getElementById("summary").innerText;

  res.groups = all(".checker-anomalies").map(function (g) {
    var summary = g.querySelector("details.more-anomalies > summary");
    return {
      id: g.id, all: all(".anomaly", g).length, visible: all(".anomaly", g).filter(visible).length,
      show_all: visible(summary) ? summary.textContent : null
    };
  });
  res.buttons = all("button.marked-op").length;
  res.op_links = all("#anomalies a.op[href^='#op-']").filter(visible).length;

  res.tooltip = tooltipAtTheCorner();
  window.scrollTo(0, 0);

  // Hovers the last lanes from the right edge leftwards until an operation
  // answers, with the timeline's bottom at the window's bottom: the tip
  // must then open up and to the left to stay in view.
  function tooltipAtTheCorner() {
    var canvas = document.getElementById("tl-canvas"), tip = document.getElementById("tl-tip");
    var wrap = document.getElementById("tl-wrap");
    var data = JSON.parse(document.getElementById("timeline-data").textContent);
    var laneH = Math.max(2, Math.min(14, Math.floor(640 / data.lanes)));
    canvas.scrollIntoView({ block: "end" });
    var r = canvas.getBoundingClientRect();
    for (var lane = data.lanes - 1; lane >= Math.max(0, data.lanes - 4); lane--) {
      var y = r.height - 22 - (data.lanes - 1 - lane) * laneH - laneH / 2;
      for (var x = r.width - 2; x > r.width / 2; x -= 2) {
        canvas.dispatchEvent(new MouseEvent("mousemove", { clientX: r.left + x, clientY: r.top + y, bubbles: true }));
        if (!tip.hidden) {
          return { shown: true, x: x, y: y, tip: rect(tip), wrap: rect(wrap), inner_height: window.innerHeight, text: tip.textContent };
        }
      }
    }
    return { shown: false };
  }

  var pre = document.createElement("pre");
  pre.id = "probe-result";
  pre.style.display = "none";
  pre.textContent = JSON.stringify(res);
  document.body.appendChild(pre);
})();
