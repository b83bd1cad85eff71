// Draws each chart of the page from its JSON data block (the CSP allows no inline script).
// Series are stacked here; the tooltip legend shows each series' own value, not the stack.
(function () {
  "use strict";
  var COLORS = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#14b8a6",
                "#ec4899", "#84cc16", "#6366f1", "#f97316", "#0ea5e9", "#a3a3a3"];

  function draw(el) {
    var data = JSON.parse(document.getElementById(el.dataset.chart).textContent);
    var names = Object.keys(data.series);
    var x = data.x, stacked = [], running = x.map(function () { return 0; });
    names.forEach(function (name) {
      running = running.map(function (v, i) { return v + data.series[name][i]; });
      stacked.push(running.slice());
    });
    // Drawn top of the stack first, so each lower band paints over the one above it.
    var order = names.map(function (_, i) { return i; }).reverse();
    var series = [{}], columns = [x];
    order.forEach(function (i) {
      var color = COLORS[i % COLORS.length];
      series.push({
        label: names[i], stroke: color, fill: color + "99", width: 1,
        value: function (u, v, si, idx) {
          if (idx == null) { return "-"; }
          var raw = data.series[names[i]][idx];
          return raw.toLocaleString(undefined, {maximumFractionDigits: 6});
        }
      });
      columns.push(stacked[i]);
    });
    if (!names.length) { el.textContent = "No data in this window."; return; }
    var width = Math.max(280, el.clientWidth || 600);
    var opts = {
      width: width, height: 300, series: series,
      axes: [{}, {label: el.dataset.unit, size: 70}],
      scales: {x: {time: true}},
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      cursor: {drag: {x: false, y: false}}
    };
    var plot = new uPlot(opts, columns, el);
    window.addEventListener("resize", function () {
      plot.setSize({width: Math.max(280, el.clientWidth || 600), height: 300});
    });
  }

  function start() {
    if (typeof uPlot === "undefined") { return; }
    Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), draw);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
