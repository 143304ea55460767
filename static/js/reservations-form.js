/*
 * The reservation form: show only the repeat fields that apply, and draw the
 * preview chart each time the live check swaps in new feedback.
 *
 * The chart plots the planner's hourly cap forecast (spending all it allows
 * from now on) without and with the reservation, and the reservation's own
 * percent per hour as bars.
 */
(function () {
  "use strict";

  const form = document.getElementById("reservation-form");
  if (!form) return;

  function syncRepeatFields() {
    const repeat = form.querySelector("[name=repeat]").value;
    const ends = form.querySelector("[name=ends]").value;
    form.querySelectorAll(".repeat-only").forEach((el) => el.classList.toggle("d-none", !repeat));
    form.querySelectorAll(".repeat-weekly").forEach((el) => el.classList.toggle("d-none", repeat !== "WEEKLY"));
    document.getElementById("wrap-until").classList.toggle("d-none", ends !== "until");
    document.getElementById("wrap-count").classList.toggle("d-none", ends !== "count");
  }

  form.addEventListener("change", syncRepeatFields);
  syncRepeatFields();

  function drawPreview() {
    const data = document.getElementById("preview-data");
    const canvas = document.getElementById("preview-chart");
    if (!data || !canvas) return;
    const forecast = JSON.parse(data.textContent);
    const charts = window.cpusched.charts;
    const times = forecast.start_ms;
    const step = 3600 * 1000;
    const span = times.length * step;
    const options = charts.baseOptions();
    options.scales = {
      x: charts.timeAxis(span, step, times[times.length - 1]),
      y: { min: 0, max: 100, title: { display: true, text: "CPU %" } },
    };
    charts.create(canvas, {
      data: {
        datasets: [
          {
            type: "line", label: "Cap without it", stepped: "before",
            data: charts.points(times, forecast.without),
            borderColor: charts.COLORS.limit, borderDash: [4, 3],
          },
          {
            type: "line", label: "Cap with it", stepped: "before",
            data: charts.points(times, forecast.with),
            borderColor: charts.COLORS.cap,
          },
          {
            type: "bar", label: "This reservation",
            data: charts.points(times, forecast.reserved),
            backgroundColor: "rgba(13, 110, 253, 0.25)",
            barPercentage: 1.0, categoryPercentage: 1.0,
          },
        ],
      },
      options: options,
    });
  }

  document.body.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "feedback") {
      window.cpusched.charts.destroyWithin(event.detail.target);
    }
  });
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "feedback") drawPreview();
  });
})();
