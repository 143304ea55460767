/*
 * The analysis chart: measured CPU per hour (mean and highest) with the
 * percent reserved in each hour, over the chosen period.
 */
(function () {
  "use strict";

  const data = document.getElementById("analysis-data");
  const canvas = document.getElementById("analysis-chart");
  if (!data || !canvas || !window.cpusched || !window.cpusched.charts) return;
  const series = JSON.parse(data.textContent);
  const charts = window.cpusched.charts;
  const times = series.start_ms;
  if (!times.length) return;
  const step = 3600 * 1000;
  const options = charts.baseOptions();
  options.scales = {
    x: charts.timeAxis(times.length * step, step, times[times.length - 1]),
    y: { min: 0, max: 100, title: { display: true, text: "CPU %" } },
  };
  charts.create(canvas, {
    data: {
      datasets: [
        { type: "line", label: "Mean used", data: charts.points(times, series.mean), borderColor: charts.COLORS.cpu },
        { type: "line", label: "Highest used", data: charts.points(times, series.peak), borderColor: charts.COLORS.peak, borderWidth: 1 },
        {
          type: "line", label: "Reserved", stepped: "after",
          data: charts.points(times, series.reserved.map((v) => (v === null ? 0 : v))),
          borderColor: "rgba(253, 126, 20, 0.8)", borderWidth: 1,
          backgroundColor: "rgba(253, 126, 20, 0.2)", fill: "origin",
        },
      ],
    },
    options: options,
  });
})();
