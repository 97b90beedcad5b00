/* The simulation run page: poll the run's status once a second until it finishes (the database
   holds the truth), reload once it is done to show the comparison, and draw its charts. */
(function () {
  "use strict";
  var box = document.getElementById("sim-run");
  if (!box) { return; }

  function poll() {
    fetch(box.dataset.statusUrl, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (s) {
        var bar = document.getElementById("sim-bar");
        bar.value = s.progress;
        document.getElementById("sim-state").textContent = s.status_display;
        document.getElementById("sim-percent").textContent = Math.round(s.progress * 100);
        var error = document.getElementById("sim-error");
        error.textContent = s.error || "";
        error.hidden = !s.error;
        if (s.done && !box.dataset.hasResult) { window.location.reload(); return; }
        if (!s.finished) { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }

  function chart(id, key, unit, series, labels) {
    var el = document.getElementById(id);
    if (!el || typeof echarts === "undefined") { return; }
    var c = echarts.init(el);
    c.setOption({
      tooltip: {trigger: "axis"},
      legend: {data: [labels.live, labels.draft], top: 0},
      grid: {left: 48, right: 16, top: 36, bottom: 56},
      dataZoom: [{type: "inside"}, {type: "slider", height: 18, bottom: 8}],
      xAxis: {type: "category", data: series.labels},
      yAxis: {type: "value", name: unit},
      series: [
        {name: labels.live, type: "line", showSymbol: false, data: series.live[key]},
        {name: labels.draft, type: "line", showSymbol: false, data: series.draft[key]}
      ]
    });
    window.addEventListener("resize", function () { c.resize(); });
  }

  var seriesNode = document.getElementById("sim-series");
  if (seriesNode) {
    var series = JSON.parse(seriesNode.textContent);
    var labels = JSON.parse(document.getElementById("sim-labels").textContent);
    chart("chart-accept", "accept_p90_minutes", labels.minutes, series, labels);
    chart("chart-waiting", "waiting", labels.orders, series, labels);
  }
  if (box.dataset.status === "queued" || box.dataset.status === "running") { poll(); }
})();
