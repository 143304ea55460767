/*
 * Chart.js helpers shared by the dashboard: colours, unit formatting, time
 * axes and a "bucketed" series that live values extend in place.
 *
 * Time axes are linear axes in Unix milliseconds with our own tick labels,
 * shown in the server's time zone (no date adapter needed).
 */
(function () {
  "use strict";

  const COLORS = {
    cpu: "#0d6efd",
    cap: "#fd7e14",
    peak: "#dc3545",
    limit: "#6c757d",
    green: "rgba(25, 135, 84, 0.22)",
    amber: "rgba(255, 193, 7, 0.30)",
    red: "rgba(220, 53, 69, 0.25)",
    memory: "#6f42c1",
    read: "#20c997",
    write: "#d63384",
    netIn: "#0dcaf0",
    netOut: "#6610f2",
    bars: "#fd7e14",
  };

  const tz = window.cpusched.config.timeZone;
  const hourMinute = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit", minute: "2-digit", hour12: false, timeZone: tz,
  });
  const dayHour = new Intl.DateTimeFormat(undefined, {
    weekday: "short", hour: "2-digit", minute: "2-digit", hour12: false, timeZone: tz,
  });
  const full = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hour12: false, timeZone: tz,
  });

  const NICE_STEPS_MS = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
    .map((s) => s * 1000);

  function tickStep(spanMs) {
    return NICE_STEPS_MS.find((step) => spanMs / step <= 8) || 86400000;
  }

  function formatRate(bytesPerSecond) {
    if (bytesPerSecond === null || bytesPerSecond === undefined) return "–";
    const units = ["B/s", "KiB/s", "MiB/s", "GiB/s"];
    let value = Math.abs(bytesPerSecond);
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (value >= 100 || unit === 0 ? value.toFixed(0) : value.toFixed(1)) + " " + units[unit];
  }

  function formatPercent(value, digits) {
    if (value === null || value === undefined || !Number.isFinite(Number(value))) return "–";
    return Number(value).toFixed(digits === undefined ? 1 : digits) + " %";
  }

  // The server's time zone offset (ms, at page load), so ticks fall on round
  // local times: 14:00, 14:10... rather than on multiples of UTC time.
  const zoneOffsetMs = (function () {
    const now = new Date();
    const parts = {};
    for (const part of new Intl.DateTimeFormat("en-US", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(now)) parts[part.type] = Number(part.value);
    const local = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second);
    return Math.round((local - now.getTime()) / 60000) * 60000;
  })();

  function roundTicks(scale) {
    const step = scale.options.ticks.stepSize;
    const first = Math.ceil((scale.min + zoneOffsetMs) / step) * step - zoneOffsetMs;
    const ticks = [];
    for (let t = first; t <= scale.max; t += step) ticks.push({ value: t });
    scale.ticks = ticks;
  }

  function timeAxis(spanMs, stepMs, lastStartMs) {
    const longSpan = spanMs > 86400000 * 1.5;
    return {
      type: "linear",
      min: lastStartMs - spanMs + stepMs,
      max: lastStartMs + stepMs,
      grid: { color: "rgba(0,0,0,0.05)" },
      afterBuildTicks: roundTicks,
      ticks: {
        stepSize: tickStep(spanMs),
        maxRotation: 0,
        autoSkip: true,
        callback: (value) => (longSpan ? dayHour : hourMinute).format(new Date(value)),
      },
    };
  }

  function baseOptions() {
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      normalized: true,
      parsing: false,
      spanGaps: false,
      interaction: { mode: "index", intersect: false },
      elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 1.5, tension: 0 } },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 12 } },
        tooltip: {
          callbacks: { title: (items) => (items.length ? full.format(new Date(items[0].parsed.x)) : "") },
        },
      },
    };
  }

  /** Build points {x, y} from the server's parallel lists. */
  function points(times, values) {
    return times.map((t, i) => ({ x: t, y: values[i] === undefined ? null : values[i] }));
  }

  /**
   * Create a chart on ``canvas``, destroying any chart already drawn there
   * (a canvas keeps its chart until destroy(), so re-creating without it
   * would leak one Chart per swap).
   */
  function create(canvas, config) {
    const existing = Chart.getChart(canvas);
    if (existing) existing.destroy();
    return new Chart(canvas, config);
  }

  /** Destroy every chart whose canvas is inside ``root`` (before a swap). */
  function destroyWithin(root) {
    if (!root || !root.querySelectorAll) return 0;
    let count = 0;
    const canvases = root.tagName === "CANVAS" ? [root] : root.querySelectorAll("canvas");
    for (const canvas of canvases) {
      const chart = Chart.getChart(canvas);
      if (chart) {
        chart.destroy();
        count += 1;
      }
    }
    return count;
  }

  /**
   * Extend a chart whose datasets share the same bucket times.
   *
   * ``values`` holds one value per dataset for the second ``tMs``; a value
   * for the bucket already last is merged (mean, max, sum or last, per
   * dataset), a later bucket is pushed and the oldest shifted out so the
   * series never holds more than span / step points.
   */
  class Buckets {
    constructor(chart, stepMs, spanMs, merge) {
      this.chart = chart;
      this.stepMs = stepMs;
      this.spanMs = spanMs;
      this.merge = merge;
      const first = chart.data.datasets[0].data;
      const last = first.length ? first[first.length - 1].x : null;
      // Seconds already in the server's last bucket, so live means blend in.
      this.count = last === null ? 0 : Math.max(1, Math.round((Date.now() - last) / 1000));
    }

    lastStart() {
      const data = this.chart.data.datasets[0].data;
      return data.length ? data[data.length - 1].x : null;
    }

    add(tMs, values) {
      const start = Math.floor(tMs / this.stepMs) * this.stepMs;
      const last = this.lastStart();
      if (last !== null && start < last) return false;
      const datasets = this.chart.data.datasets;
      if (last === start) {
        this.count += 1;
        datasets.forEach((dataset, i) => {
          const point = dataset.data[dataset.data.length - 1];
          point.y = this.combine(this.merge[i], point.y, values[i]);
        });
      } else {
        this.count = 1;
        datasets.forEach((dataset, i) => {
          dataset.data.push({ x: start, y: values[i] === undefined ? null : values[i] });
        });
        this.trim(start);
      }
      const x = this.chart.options.scales.x;
      x.min = start - this.spanMs + this.stepMs;
      x.max = start + this.stepMs;
      return true;
    }

    combine(how, old, value) {
      if (value === null || value === undefined) return old;
      if (old === null || old === undefined) return value;
      if (how === "max") return Math.max(old, value);
      if (how === "sum") return old + value;
      if (how === "last") return value;
      return old + (value - old) / this.count;
    }

    trim(start) {
      const oldest = start - this.spanMs + this.stepMs;
      for (const dataset of this.chart.data.datasets) {
        while (dataset.data.length && dataset.data[0].x < oldest) dataset.data.shift();
      }
    }
  }

  window.cpusched.charts = {
    COLORS, formatRate, formatPercent, timeAxis, baseOptions, points, create,
    destroyWithin, Buckets,
  };
})();
