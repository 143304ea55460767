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
    const step = 3600 * 1000;
    // Each value holds for its hour: repeat the last one at the end so the
    // stepped lines draw the final hour too.
    const times = forecast.start_ms.concat([forecast.start_ms[forecast.start_ms.length - 1] + step]);
    const last = (values) => values.concat([values[values.length - 1]]);
    const span = forecast.start_ms.length * step;
    const options = charts.baseOptions();
    options.scales = {
      x: charts.timeAxis(span, step, times[times.length - 2]),
      y: { min: 0, max: 100, title: { display: true, text: "CPU %" } },
    };
    charts.create(canvas, {
      data: {
        datasets: [
          {
            type: "line", label: "Cap without it", stepped: "after",
            data: charts.points(times, last(forecast.without)),
            borderColor: charts.COLORS.limit, borderDash: [4, 3],
          },
          {
            type: "line", label: "Cap with it", stepped: "after",
            data: charts.points(times, last(forecast.with)),
            borderColor: charts.COLORS.cap,
          },
          {
            type: "line", label: "This reservation", stepped: "after",
            data: charts.points(times, last(forecast.reserved)),
            borderColor: "rgba(13, 110, 253, 0.6)", borderWidth: 1,
            backgroundColor: "rgba(13, 110, 253, 0.18)", fill: "origin",
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
