/* Report charts: each .rp-chart names a json_script holding {kind, x, y, y2, series}
   (dashboards/reports/selectors.py _chart); ECharts (vendor/echarts) draws it. */
(function () {
  "use strict";
  function option(spec) {
    var right = spec.series.some(function (s) { return s.right; });
    var yAxis = [{ type: "value", name: spec.y || "" }];
    if (right) { yAxis.push({ type: "value", name: spec.y2 || "", splitLine: { show: false } }); }
    return {
      tooltip: { trigger: "axis" },
      legend: { type: "scroll", top: 0 },
      grid: { left: 48, right: right ? 56 : 24, top: 40, bottom: 56, containLabel: true },
      xAxis: { type: "category", data: spec.x, axisLabel: { hideOverlap: true } },
      yAxis: yAxis,
      dataZoom: spec.x.length > 60 ? [{ type: "inside" }, { type: "slider", height: 16, bottom: 8 }] : [],
      series: spec.series.map(function (s) {
        return {
          name: s.name,
          type: s.right ? "line" : spec.kind,
          yAxisIndex: s.right ? 1 : 0,
          data: s.data,
          connectNulls: true,
          showSymbol: spec.x.length <= 60,
        };
      }),
    };
  }
  function draw() {
    if (!window.echarts) { return; }
    document.querySelectorAll(".rp-chart[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.dataset.chart);
      if (!source) { return; }
      var chart = window.echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(option(JSON.parse(source.textContent)));
      el.dataset.drawn = "1";
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
