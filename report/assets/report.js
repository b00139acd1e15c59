// faultline report: draws the timeline from the embedded JSON on a canvas,
// with zoom (wheel, buttons), pan (drag), tooltips kept inside the view,
// lanes labelled by process in a gutter on the left, fault bands named in
// a strip above the lanes (HTML labels over the canvas), and links
// #op-<index> that zoom to an operation. Plain script, no network, no
// libraries. Data (see src/timeline.rs): times in microseconds; ops are
// [lane, start, end or -1, outcome 0..3, f code, index, process, description];
// cells are flat [lane, bucket, ok, fail, info, pending, ...]; bands are
// [start, end, kind, label, short name]; lane_names one label a lane.
(function () {
  "use strict";
  var body = document.body;
  function fail(msg) { body.setAttribute("data-js-error", String(msg)); }
  window.addEventListener("error", function (ev) { fail(ev.message); });

  var COLORS = ["#3b82c4", "#e6799a", "#e0a800", "#9aa0a6"];
  var OUTCOMES = ["ok", "fail", "info", "pending"];
  var BAND_COLORS = { partition: "rgba(120,80,200,", kill: "rgba(220,40,40,", pause: "rgba(230,150,0,", other: "rgba(0,150,150,",
    disk: "rgba(140,90,40,", clock: "rgba(40,110,220," };
  var MARK = "#d0021b";
  var BAND_ROW_H = 15;      // one row of the fault strip above the lanes
  var BAND_ROWS_MAX = 4;    // faults in force at once past it share the last row
  var BAND_NAMES_MAX = 200; // names drawn at once; the rest show on hover
  var AXIS = 22;            // time axis below the lanes
  var GUTTER_MAX = 96;      // widest lane label, in px

  function Timeline(d) {
    this.d = d;
    this.canvas = document.getElementById("tl-canvas");
    this.ctx = this.canvas.getContext("2d");
    this.tip = document.getElementById("tl-tip");
    this.names = document.getElementById("tl-bands");
    this.tEnd = Math.max(d.t_end, 1);
    this.v0 = 0; this.v1 = this.tEnd;
    this.laneH = Math.max(2, Math.min(14, Math.floor(640 / d.lanes)));
    this.byIndex = new Map();
    this.byLane = [];
    for (var l = 0; l < d.lanes; l++) this.byLane.push([]);
    for (var i = 0; i < d.ops.length; i++) {
      var op = d.ops[i];
      this.byIndex.set(op[5], op);
      this.byLane[op[0]].push(op);
    }
    this.byLane.forEach(function (a) { a.sort(function (x, y) { return x[1] - y[1]; }); });
    this.marked = new Set(d.marked);
    this.selected = new Set();
    var maxCell = 1;
    for (var c = 0; c < d.cells.length; c += 6) {
      maxCell = Math.max(maxCell, d.cells[c + 2] + d.cells[c + 3] + d.cells[c + 4] + d.cells[c + 5]);
    }
    this.maxCell = maxCell;
    this.bandRows = bandRows(d.bands);
    var rows = 0;
    this.bandRows.forEach(function (r) { rows = Math.max(rows, r + 1); });
    this.strip = rows * BAND_ROW_H + 4;
  }

  // Rows of the fault strip: faults in force at the same time get
  // different rows (greedy, in order of start), at most BAND_ROWS_MAX.
  function bandRows(bands) {
    var ends = [], rows = [];
    bands.forEach(function (b) {
      var r = 0;
      while (r < ends.length && ends[r] > b[0]) r++;
      if (r >= BAND_ROWS_MAX) r = BAND_ROWS_MAX - 1;
      ends[r] = Math.max(ends[r] || 0, b[1]);
      rows.push(r);
    });
    return rows;
  }

  Timeline.prototype.resize = function () {
    var ratio = window.devicePixelRatio || 1;
    this.w = Math.max(300, this.canvas.parentNode.clientWidth || 900);
    this.h = this.strip + this.d.lanes * this.laneH + AXIS;
    this.canvas.width = Math.round(this.w * ratio);
    this.canvas.height = Math.round(this.h * ratio);
    this.canvas.style.height = this.h + "px";
    this.ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    this.gutter = this.gutterWidth();
    this.draw();
  };

  // Wide enough for the longest lane label, within bounds.
  Timeline.prototype.gutterWidth = function () {
    var ctx = this.ctx, widest = 0;
    ctx.font = "10px system-ui, sans-serif";
    (this.d.lane_names || []).forEach(function (n) { widest = Math.max(widest, ctx.measureText(n).width); });
    return Math.min(GUTTER_MAX, Math.max(24, Math.ceil(widest) + 8));
  };

  Timeline.prototype.x = function (t) { return this.gutter + (t - this.v0) / (this.v1 - this.v0) * (this.w - this.gutter); };
  Timeline.prototype.t = function (x) { return this.v0 + (x - this.gutter) / (this.w - this.gutter) * (this.v1 - this.v0); };

  Timeline.prototype.draw = function () {
    var ctx = this.ctx, d = this.d, lh = this.laneH;
    var top = this.strip, bottom = this.strip + d.lanes * lh;
    ctx.clearRect(0, 0, this.w, this.h);
    ctx.save();
    ctx.beginPath(); ctx.rect(this.gutter, 0, this.w - this.gutter, this.h); ctx.clip();
    this.drawBands(top, bottom);
    this.drawCells(top);
    this.drawOps(top);
    ctx.restore();
    this.laneLabels(top);
    this.axis(bottom);
    this.nameBands();
    var range = document.getElementById("tl-range");
    this.canvas.setAttribute("data-view", Math.round(this.v0) + "," + Math.round(this.v1));
    var span = Math.max(this.v1 - this.v0, 1);
    if (range) range.textContent = fmtTick(Math.max(0, this.v0), span / 100) + " – " + fmtTick(this.v1, span / 100);
  };

  Timeline.prototype.drawBands = function (top, bottom) {
    var ctx = this.ctx, self = this;
    this.d.bands.forEach(function (b, i) {
      var x0 = self.x(b[0]), x1 = Math.max(self.x(b[1]), x0 + 1);
      if (x1 < self.gutter || x0 > self.w) return;
      var base = BAND_COLORS[b[2]] || BAND_COLORS.other;
      ctx.fillStyle = base + "0.13)";
      ctx.fillRect(x0, top, x1 - x0, bottom - top);
      ctx.fillStyle = base + "0.35)";
      ctx.fillRect(x0, 2 + BAND_ROW_H * self.bandRows[i], x1 - x0, BAND_ROW_H - 2);
    });
  };

  Timeline.prototype.drawCells = function (top) {
    var ctx = this.ctx, lh = this.laneH, bw = this.d.bucket_us, cells = this.d.cells;
    for (var c = 0; c < cells.length; c += 6) {
      var x0 = this.x(cells[c + 1] * bw), x1 = this.x((cells[c + 1] + 1) * bw);
      if (x1 < this.gutter || x0 > this.w) continue;
      var n = [cells[c + 2], cells[c + 3], cells[c + 4], cells[c + 5]];
      var total = n[0] + n[1] + n[2] + n[3], k = 0;
      for (var j = 1; j < 4; j++) if (n[j] > n[k]) k = j;
      // Zoomed in past a bucket, its count says little about this instant:
      // keep it as a faint background behind the individual operations.
      var faint = x1 - x0 > 40 ? 0.3 : 1;
      ctx.globalAlpha = faint * (0.25 + 0.75 * Math.min(1, total / this.maxCell));
      ctx.fillStyle = n[1] > 0 && k === 0 ? "#8a79b8" : COLORS[k];
      ctx.fillRect(x0, top + cells[c] * lh, Math.max(1, x1 - x0), Math.max(1, lh - 1));
    }
    ctx.globalAlpha = 1;
  };

  Timeline.prototype.drawOps = function (top) {
    var ctx = this.ctx, d = this.d, self = this, lh = this.laneH, outlined = [];
    for (var i = 0; i < d.ops.length; i++) {
      var op = d.ops[i];
      var end = op[2] < 0 ? this.tEnd : op[2];
      var ox0 = this.x(op[1]), ox1 = this.x(end);
      if (ox1 < this.gutter || ox0 > this.w) continue;
      ctx.fillStyle = COLORS[op[3]];
      ctx.fillRect(ox0, top + op[0] * lh, Math.max(1, ox1 - ox0), Math.max(1, lh - 1));
      if (this.marked.has(op[5]) || this.selected.has(op[5])) outlined.push(op);
    }
    outlined.forEach(function (op) {
      var end = op[2] < 0 ? self.tEnd : op[2];
      var ox0 = self.x(op[1]), w = Math.max(3, self.x(end) - ox0);
      ctx.strokeStyle = self.selected.has(op[5]) ? "#000" : MARK;
      ctx.lineWidth = self.selected.has(op[5]) ? 3 : 2;
      ctx.strokeRect(ox0 - 1, top + op[0] * lh - 1, w + 2, Math.max(3, lh + 1));
    });
  };

  // Each lane's processes in the gutter; with thin lanes, every k-th lane
  // so labels do not overlap.
  Timeline.prototype.laneLabels = function (top) {
    var ctx = this.ctx, names = this.d.lane_names || [], lh = this.laneH;
    var every = Math.max(1, Math.ceil(11 / lh));
    ctx.fillStyle = "#444"; ctx.font = "10px system-ui, sans-serif"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (var l = 0; l < names.length; l += every) {
      ctx.fillText(names[l], this.gutter - 4, top + l * lh + lh / 2, this.gutter - 6);
    }
    ctx.textBaseline = "alphabetic";
    ctx.fillRect(this.gutter - 1, top, 1, names.length * lh);
  };

  // The visible bands' names as HTML over the strip: in the band, or
  // beside it when it is narrow and the row has room before the next one.
  Timeline.prototype.nameBands = function () {
    var self = this, box = this.names, bands = this.d.bands, shown = 0;
    if (!box) return;
    box.textContent = "";
    var nextStart = [], next = new Array(bands.length);
    for (var i = bands.length - 1; i >= 0; i--) {
      var r = this.bandRows[i];
      next[i] = nextStart[r] === undefined ? this.w : nextStart[r];
      nextStart[r] = Math.max(this.gutter, this.x(bands[i][0]));
    }
    bands.forEach(function (b, i) {
      var x0 = Math.max(self.gutter, self.x(b[0])), x1 = self.x(b[1]);
      if (shown >= BAND_NAMES_MAX || x1 < self.gutter || x0 > self.w) return;
      var room = Math.min(next[i], self.w) - x0 - 3;
      if (room < 14) return;
      var el = document.createElement("span");
      el.className = "tl-band-name band-" + b[2];
      el.textContent = b[4];
      el.title = b[3];
      el.style.left = x0 + "px";
      el.style.top = (2 + BAND_ROW_H * self.bandRows[i]) + "px";
      el.style.maxWidth = room + "px";
      box.appendChild(el);
      shown++;
    });
    box.setAttribute("data-named", String(shown));
  };

  function fmt(us) {
    var s = us / 1e6;
    return s >= 100 ? s.toFixed(0) + " s" : s >= 1 ? s.toFixed(2) + " s" : (us / 1e3).toFixed(2) + " ms";
  }

  // A tick in seconds with as many decimals as the step needs, so ticks
  // a millisecond apart at 500 s do not all read "500 s".
  function fmtTick(us, step) {
    var decimals = Math.max(0, Math.min(6, Math.ceil(-Math.log10(step / 1e6))));
    return (us / 1e6).toFixed(decimals) + " s";
  }

  Timeline.prototype.axis = function (y) {
    var ctx = this.ctx, span = this.v1 - this.v0;
    var raw = span / 10, mag = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-9))));
    var step = [1, 2, 5, 10].map(function (m) { return m * mag; }).filter(function (s) { return s >= raw; })[0] || raw;
    ctx.fillStyle = "#444"; ctx.strokeStyle = "#444"; ctx.lineWidth = 1;
    ctx.font = "10px system-ui, sans-serif"; ctx.textAlign = "center";
    ctx.beginPath(); ctx.moveTo(this.gutter, y + 0.5); ctx.lineTo(this.w, y + 0.5); ctx.stroke();
    for (var t = Math.ceil(this.v0 / step) * step, n = 0; t <= this.v1 && n < 40; t += step, n++) {
      var x = this.x(t);
      // The view may start a little before the test; no tick reads "-0.01 s".
      if (x < this.gutter || t < 0) continue;
      ctx.fillRect(x, y, 1, 4);
      ctx.textAlign = x < this.gutter + 20 ? "left" : x > this.w - 20 ? "right" : "center";
      ctx.fillText(fmtTick(t, step), x, y + 15);
    }
  };

  Timeline.prototype.zoom = function (factor, atX) {
    var tc = this.t(atX === undefined ? (this.gutter + this.w) / 2 : atX);
    var span = Math.min(this.tEnd * 1.05, Math.max(10, (this.v1 - this.v0) * factor));
    var frac = (tc - this.v0) / (this.v1 - this.v0);
    this.setView(tc - frac * span, tc - frac * span + span);
  };

  Timeline.prototype.setView = function (a, b) {
    var span = b - a, pad = this.tEnd * 0.025;
    if (a < -pad) { a = -pad; b = a + span; }
    if (b > this.tEnd + pad) { b = this.tEnd + pad; a = Math.max(-pad, b - span); }
    this.v0 = a; this.v1 = b;
    this.draw();
  };

  Timeline.prototype.opAt = function (x, y) {
    var lane = Math.floor((y - this.strip) / this.laneH);
    if (lane < 0 || lane >= this.d.lanes || x < this.gutter) return null;
    var t = this.t(x), slack = (this.v1 - this.v0) / (this.w - this.gutter) * 3, ops = this.byLane[lane];
    var lo = 0, hi = ops.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (ops[mid][1] <= t + slack) lo = mid + 1; else hi = mid; }
    for (var i = lo - 1; i >= 0 && i >= lo - 8; i--) {
      var end = ops[i][2] < 0 ? this.tEnd : ops[i][2];
      if (end + slack >= t) return ops[i];
    }
    return null;
  };

  Timeline.prototype.describe = function (op) {
    var end = op[2] < 0 ? "never completed" : "completed " + fmt(op[2]) + " (" + fmt(op[2] - op[1]) + ")";
    return "op " + op[5] + " · process " + op[6] + " · " + OUTCOMES[op[3]] +
      (this.marked.has(op[5]) ? " · ANOMALY" : "") + "\n" + op[7] + "\ninvoked " + fmt(op[1]) + ", " + end;
  };

  // Shows the tip near (x, y) in the canvas, kept inside the timeline and
  // the window: left of the pointer near the right edge, above it near the
  // bottom, so its last line is always visible.
  Timeline.prototype.showTip = function (text, x, y) {
    var tip = this.tip, r = this.canvas.getBoundingClientRect();
    tip.textContent = text;
    tip.hidden = false;
    var tw = tip.offsetWidth, th = tip.offsetHeight;
    var left = x + 12;
    if (left + tw > this.w - 2) left = x - tw - 12;
    left = Math.max(0, Math.min(left, this.w - tw - 2));
    var top = y + 14;
    var bottomLimit = Math.min(this.h, window.innerHeight - r.top);
    if (top + th > bottomLimit - 2) top = y - th - 10;
    top = Math.max(Math.max(0, -r.top), Math.min(top, bottomLimit - th - 2));
    tip.style.left = left + "px";
    tip.style.top = top + "px";
  };

  Timeline.prototype.focus = function (indices) {
    var self = this, found = indices.map(function (i) { return self.byIndex.get(i); }).filter(Boolean);
    if (!found.length) return false;
    var a = Infinity, b = -Infinity;
    found.forEach(function (op) { a = Math.min(a, op[1]); b = Math.max(b, op[2] < 0 ? self.tEnd : op[2]); });
    var pad = Math.max((b - a) * 1.5, 500);
    this.selected = new Set(indices);
    this.setView(a - pad, b + pad);
    document.getElementById("timeline").scrollIntoView();
    return true;
  };

  Timeline.prototype.bind = function () {
    var self = this, c = this.canvas, drag = null;
    c.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var r = c.getBoundingClientRect();
      self.zoom(ev.deltaY > 0 ? 1.25 : 0.8, ev.clientX - r.left);
    }, { passive: false });
    c.addEventListener("mousedown", function (ev) { drag = { x: ev.clientX, v0: self.v0, v1: self.v1 }; });
    window.addEventListener("mouseup", function () { drag = null; });
    c.addEventListener("mousemove", function (ev) {
      var r = c.getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
      if (drag) {
        var dt = (ev.clientX - drag.x) / (self.w - self.gutter) * (drag.v1 - drag.v0);
        self.setView(drag.v0 - dt, drag.v1 - dt);
        return;
      }
      var op = self.opAt(x, y);
      if (!op) { self.tip.hidden = true; return; }
      self.showTip(self.describe(op), x, y);
    });
    c.addEventListener("mouseleave", function () { self.tip.hidden = true; });
    c.addEventListener("dblclick", function (ev) { self.zoom(0.5, ev.clientX - c.getBoundingClientRect().left); });
    document.getElementById("tl-in").addEventListener("click", function () { self.zoom(0.5); });
    document.getElementById("tl-out").addEventListener("click", function () { self.zoom(2); });
    document.getElementById("tl-reset").addEventListener("click", function () { self.selected = new Set(); self.setView(0, self.tEnd); });
    window.addEventListener("resize", function () { self.resize(); });
    document.addEventListener("click", function (ev) {
      var a = ev.target.closest && ev.target.closest("a[href^='#op-']");
      if (!a) return;
      var list = (a.getAttribute("data-ops") || a.getAttribute("href").slice(4)).split(",").map(Number);
      if (self.focus(list)) ev.preventDefault();
    });
    window.addEventListener("hashchange", function () { self.focusHash(); });
  };

  Timeline.prototype.focusHash = function () {
    var m = /^#op-(\d+)$/.exec(location.hash);
    if (m) this.focus([Number(m[1])]);
  };

  // The legend's "named by an anomaly" entry, with how many are outlined
  // (each anomaly links to its own; there is no list of them all).
  Timeline.prototype.countMarked = function () {
    var key = document.getElementById("marked-ops");
    if (!key) return;
    key.setAttribute("data-count", String(this.d.marked.length));
    key.appendChild(document.createTextNode(" (" + this.d.marked.length + ", outlined in red)"));
  };

  function main() {
    var d = JSON.parse(document.getElementById("timeline-data").textContent);
    var tl = new Timeline(d);
    tl.bind();
    tl.resize();
    tl.countMarked();
    var info = document.getElementById("tl-info");
    info.textContent = d.detail_ops + " of " + d.total_ops + " operations drawn individually" +
      (d.detail_ops < d.total_ops ? "; the rest are counted in buckets of " + fmt(d.bucket_us) +
        " per lane (shade: how many; colour: the most common outcome)" : "") + ".";
    tl.focusHash();
    body.setAttribute("data-render-ms", String(Math.round(performance.now())));
    body.setAttribute("data-ready", "1");
  }

  try { main(); } catch (e) { fail(e && e.stack ? e.stack : e); throw e; }
})();
