/*
 * The dashboard: charts drawn once from /api/monitoring/history (downsampled
 * on the server), then extended in place by /ws/monitoring messages.
 *
 * Memory stays flat for hours because nothing is re-created per message:
 * points are pushed and shifted within a fixed span and each chart is
 * redrawn with update("none"). Charts inside a fragment HTMX replaces (the
 * resource panel's range switch) are destroyed before the swap and created
 * again for the new fragment after it.
 */
(function () {
  "use strict";

  const site = window.cpusched;
  const C = site.charts;
  const S = JSON.parse(document.getElementById("dashboard-settings").textContent);
  const initial = JSON.parse(document.getElementById("live-initial").textContent);

  // Browser clock minus server clock: bucket times follow the server's.
  const skewMs = site.config.serverNowMs - Date.now();
  const serverNow = () => Date.now() + skewMs;

  const state = {
    ageS: initial.heartbeat_age,
    ageAt: Date.now(),
    lastTs: null,
    messages: 0,
    historyErrors: 0,
  };
  const charts = {};
  const buckets = {};

  // -- figures --------------------------------------------------------------

  function num(value) {
    return value === null || value === undefined || !Number.isFinite(Number(value)) ? null : Number(value);
  }

  /** The message's data (monitoring.live.current) under short names. */
  function normalise(d) {
    const remaining = d.quota_remaining || {};
    const disk = d.disk_io || {};
    const network = d.network || {};
    const cpu = num(d.cpu_usage);
    return {
      timestampMs: d.timestamp ? Date.parse(d.timestamp) : null,
      cpu,
      cap: num(d.current_limit),
      bound: num(d.bound),
      quotaStatus: d.quota_status || "unknown",
      mode: d.mode,
      tier: d.tier,
      avgMean: num(d.window_12h_avg),
      avgLeft: num(remaining.avg_quota),
      avgShare: num(d.avg_remaining_percent),
      peakUsed: num(d.window_24h_peak),
      peakLeft: num(remaining.peak_quota),
      runTime100: num(d.run_time_at_100),
      reservation: d.reservation,
      openAlerts: num(d.alerts_open),
      running: d.scheduler_running,
      ageS: num(d.heartbeat_age),
      isPeak: cpu !== null && cpu >= S.peakThreshold,
      memory: num(d.memory_usage),
      diskRead: num(disk.read),
      diskWrite: num(disk.write),
      netIn: num(network.in),
      netOut: num(network.out),
    };
  }

  function setText(id, text) {
    const element = document.getElementById(id);
    if (element && element.textContent !== text) element.textContent = text;
  }

  function formatDuration(seconds) {
    if (seconds === null) return "–";
    const total = Math.max(0, Math.round(seconds));
    if (total < 120) return total + " s";
    const minutes = Math.floor(total / 60);
    if (minutes < 120) return minutes + " min";
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return minutes % 60 ? hours + " h " + (minutes % 60) + " min" : hours + " h";
    const days = Math.floor(hours / 24);
    return hours % 24 ? days + " d " + (hours % 24) + " h" : days + " d";
  }

  /** green, amber or red for the average budget left (percentage points). */
  function budgetLevel(left) {
    if (left === null) return "green";
    if (left <= S.avgCritical) return "red";
    if (left <= S.avgWarning) return "amber";
    return "green";
  }

  function showFigures(live) {
    setText("stat-cpu", C.formatPercent(live.cpu));
    setText("stat-cap", C.formatPercent(live.cap));
    setText("stat-bound", C.formatPercent(live.bound));
    setText("stat-avg", C.formatPercent(live.avgMean, 2));
    const quota = document.getElementById("stat-quota");
    if (quota && quota.textContent !== live.quotaStatus) {
      quota.textContent = live.quotaStatus;
      quota.className = "badge quota-badge quota-" + String(live.quotaStatus).replace(/[^a-z_-]/gi, "");
    }
    if (live.openAlerts !== null) setText("stat-alerts", String(live.openAlerts));
    if (live.mode) setText("live-mode", String(live.mode));
    if (live.tier) setText("live-tier", String(live.tier));
    if (live.timestampMs) setText("live-updated", site.formatTime(live.timestampMs));
    setText("quota-avg", live.avgLeft === null ? "–" : live.avgLeft.toFixed(2) + " pt");
    setText("quota-avg-share", C.formatPercent(live.avgShare, 0));
    setText("quota-peak", live.peakLeft === null ? "–" : Math.round(live.peakLeft) + " s");
    setText("peak-left-inline", live.peakLeft === null ? "–" : String(Math.round(live.peakLeft)));
    setText("quota-reservation", live.reservation ? String(live.reservation) : "none");
    const run = live.running === false ? "–" : live.runTime100 === null ? "no limit" : formatDuration(live.runTime100);
    setText("quota-run100", run);
  }

  function showHeartbeat() {
    const badge = document.getElementById("stat-scheduler");
    if (!badge) return;
    const ageS = state.ageS === null || state.ageS === undefined
      ? null : state.ageS + (Date.now() - state.ageAt) / 1000;
    const running = ageS !== null && ageS <= S.staleAfterS;
    const text = running ? "running" : "scheduler not running";
    if (badge.textContent !== text) {
      badge.textContent = text;
      badge.className = "badge " + (running ? "text-bg-success" : "text-bg-danger");
    }
    setText("stat-heartbeat", ageS === null ? "never" : Math.round(ageS) + " s ago");
  }

  function showPeakProgress(used) {
    const bar = document.getElementById("peak-progress");
    if (!bar || used === null || used === undefined) return;
    const budget = S.peakBudget || 1;
    const left = budget - used;
    bar.style.width = Math.min(100, (100 * used) / budget).toFixed(1) + "%";
    let level = "bg-success";
    if (left <= S.peakCritical) level = "bg-danger";
    else if (left <= S.peakWarning) level = "bg-warning";
    bar.className = "progress-bar " + level;
    setText("peak-used", String(Math.round(used)));
    const wrap = document.getElementById("peak-progress-wrap");
    if (wrap) wrap.setAttribute("aria-valuenow", String(Math.round(used)));
  }

  // -- history from the API ---------------------------------------------------

  function stepFor(seconds, points) {
    return Math.max(1, Math.ceil(seconds / Math.max(1, points)));
  }

  /** Bucket starts (ms) of ``stepS`` covering the ``spanS`` up to now. */
  function starts(spanS, stepS) {
    const stepMs = stepS * 1000;
    const last = Math.floor(serverNow() / stepMs) * stepMs;
    const count = Math.max(1, Math.ceil(spanS / stepS));
    const list = new Array(count);
    for (let i = 0; i < count; i += 1) list[i] = last - (count - 1 - i) * stepMs;
    return list;
  }

  /** One range of history as Map(bucket start ms -> point). */
  async function history(spanS, stepS) {
    const count = Math.ceil(spanS / stepS) + 2;
    const query = new URLSearchParams({
      hours: String((spanS + stepS) / 3600),
      resolution: String(stepS),
      per_page: String(Math.min(10000, count)),
    });
    const response = await fetch(S.historyUrl + "?" + query, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error("history " + response.status);
    const body = await response.json();
    const points = new Map();
    for (const point of body.data) points.set(Date.parse(point.timestamp), point);
    return points;
  }

  function series(times, points, read) {
    return times.map((t) => {
      const point = points.get(t);
      const value = point ? read(point) : null;
      return { x: t, y: value === undefined ? null : value };
    });
  }

  // -- the charts -------------------------------------------------------------

  async function cpuChart() {
    const stepS = stepFor(3600, S.maxPoints);
    const stepMs = stepS * 1000;
    const times = starts(3600, stepS);
    const points = await history(3600, stepS);
    const options = C.baseOptions();
    options.scales = {
      x: C.timeAxis(3600 * 1000, stepMs, times[times.length - 1]),
      y: { min: 0, max: 100, position: "left", title: { display: true, text: "CPU %" } },
      y1: {
        min: 0, max: 100, position: "right", grid: { drawOnChartArea: false },
        title: { display: true, text: "cap %" },
      },
    };
    // Bars would widen the axis by half a bar's slot at each end otherwise.
    options.scales.x.offset = false;
    // The band says "this bucket had peak seconds", not a CPU value.
    options.plugins.tooltip.callbacks.label = (item) => (item.datasetIndex === 2
      ? "peak seconds in this interval"
      : item.dataset.label + ": " + C.formatPercent(item.parsed.y));
    charts.cpu = C.create(document.getElementById("chart-cpu"), {
      type: "line",
      data: {
        datasets: [
          {
            label: "CPU", data: series(times, points, (p) => p.cpu_usage),
            borderColor: C.COLORS.cpu, backgroundColor: C.COLORS.cpu, yAxisID: "y",
          },
          {
            label: "Cap", data: series(times, points, (p) => p.cpu_limit),
            borderColor: C.COLORS.cap, backgroundColor: C.COLORS.cap, yAxisID: "y1",
            stepped: true, borderDash: [5, 3],
          },
          {
            type: "bar", label: "Peak seconds",
            data: series(times, points, (p) => (p.peak_seconds > 0 ? 100 : null)),
            backgroundColor: "rgba(220,53,69,0.28)", yAxisID: "y",
            barThickness: 3, grouped: false, order: 3,
          },
        ],
      },
      options,
    });
    buckets.cpu = new C.Buckets(charts.cpu, stepMs, 3600 * 1000, ["mean", "max", "max"]);
  }

  /**
   * The rolling mean of the average window at each bucket of the last
   * window length, from bucket sums (mean x seconds measured) over twice
   * the window; unsampled seconds count as idle, as the average rule does.
   */
  function rollingMeans(times, points, windowS, stepMs) {
    const perWindow = Math.max(1, Math.round((windowS * 1000) / stepMs));
    const sums = times.map((t) => {
      const p = points.get(t);
      return p && p.cpu_usage !== null ? p.cpu_usage * p.samples : 0;
    });
    const seen = times.map((t) => points.has(t));
    const first = Math.max(0, times.length - perWindow);
    let running = 0;
    for (let i = Math.max(0, first - perWindow + 1); i <= first; i += 1) running += sums[i];
    let any = seen.slice(0, first + 1).some(Boolean);
    const out = [];
    for (let i = first; i < times.length; i += 1) {
      if (i > first) {
        running += sums[i] - (i >= perWindow ? sums[i - perWindow] : 0);
        any = any || seen[i];
      }
      out.push({ x: times[i], y: any ? Math.round((1000 * running) / windowS) / 1000 : null });
    }
    return out;
  }

  async function trendChart() {
    const windowS = S.avgWindowS;
    const stepS = stepFor(windowS, Math.min(144, S.maxPoints));
    const stepMs = stepS * 1000;
    const times = starts(2 * windowS, stepS);
    const points = await history(2 * windowS, stepS);
    const avg = rollingMeans(times, points, windowS, stepMs);
    const empty = avg.every((p) => p.y === null);
    const spanMs = avg.length * stepMs;
    const lastMean = avg.length ? avg[avg.length - 1].y : null;
    const left = num(initial.quota_remaining && initial.quota_remaining.avg_quota)
      ?? (lastMean === null ? null : S.avgMax - lastMean);
    const options = C.baseOptions();
    options.scales = {
      x: C.timeAxis(spanMs, stepMs, avg.length ? avg[avg.length - 1].x : serverNow()),
      y: { min: 0, suggestedMax: S.avgMax * 1.5, title: { display: true, text: "mean CPU %" } },
    };
    charts.trend = C.create(document.getElementById("chart-trend"), {
      type: "line",
      data: {
        datasets: [
          {
            label: "Rolling average", data: avg, borderColor: C.COLORS.cpu,
            backgroundColor: C.COLORS.cpu, borderWidth: 2,
            // No history yet: no band, rather than a full budget that is not known.
            fill: empty ? false : { target: 1, above: C.COLORS.red, below: C.COLORS[budgetLevel(left)] },
          },
          {
            label: "Limit " + S.avgMax + " %", data: avg.map((p) => ({ x: p.x, y: S.avgMax })),
            borderColor: C.COLORS.limit, backgroundColor: C.COLORS.limit, borderDash: [6, 4],
          },
        ],
      },
      options,
    });
    buckets.trend = new C.Buckets(charts.trend, stepMs, spanMs, ["last", "last"]);
  }

  async function peakChart() {
    const hours = Math.min(168, Math.max(1, Math.ceil(S.peakWindowS / 3600)));
    const times = starts(hours * 3600, 3600);
    const points = await history(hours * 3600, 3600);
    const options = C.baseOptions();
    options.plugins.legend.display = false;
    options.scales = {
      x: C.timeAxis(hours * 3600000, 3600000, times[times.length - 1]),
      y: { min: 0, suggestedMax: 60, title: { display: true, text: "seconds" } },
    };
    options.scales.x.offset = true;
    const data = series(times, points, (p) => p.peak_seconds);
    charts.peak = C.create(document.getElementById("chart-peak"), {
      type: "bar",
      data: {
        datasets: [{
          label: "Peak seconds", data, backgroundColor: C.COLORS.bars,
          barPercentage: 1, categoryPercentage: 0.9,
        }],
      },
      options,
    });
    buckets.peak = new C.Buckets(charts.peak, 3600000, hours * 3600000, ["sum"]);
    if (num(initial.window_24h_peak) === null) {
      showPeakProgress(data.reduce((sum, p) => sum + (p.y || 0), 0));
    }
  }

  async function resourceCharts(panel) {
    const spanS = Number(panel.dataset.seconds) || 3600;
    const stepS = stepFor(spanS, Math.min(360, S.maxPoints));
    const stepMs = stepS * 1000;
    const times = starts(spanS, stepS);
    const points = await history(spanS, stepS);
    // The range may have been switched while the history was loading.
    if (!panel.isConnected || charts.memory) return;
    const last = times[times.length - 1];

    function lineChart(id, datasets, yOptions) {
      const options = C.baseOptions();
      options.scales = { x: C.timeAxis(spanS * 1000, stepMs, last), y: yOptions };
      return C.create(panel.querySelector("#" + id), { type: "line", data: { datasets }, options });
    }

    const rate = { min: 0, ticks: { callback: (v) => C.formatRate(v) } };
    const rateLabel = (item) => item.dataset.label + ": " + C.formatRate(item.parsed.y);

    charts.memory = lineChart("chart-memory", [{
      label: "Memory", data: series(times, points, (p) => p.memory_usage),
      borderColor: C.COLORS.memory, backgroundColor: "rgba(111,66,193,0.15)", fill: "origin",
    }], { min: 0, max: 100, ticks: { callback: (v) => v + " %" } });
    charts.disk = lineChart("chart-disk", [
      { label: "Read", data: series(times, points, (p) => p.disk_io_read), borderColor: C.COLORS.read, backgroundColor: C.COLORS.read },
      { label: "Write", data: series(times, points, (p) => p.disk_io_write), borderColor: C.COLORS.write, backgroundColor: C.COLORS.write },
    ], rate);
    charts.network = lineChart("chart-network", [
      { label: "In", data: series(times, points, (p) => p.network_in), borderColor: C.COLORS.netIn, backgroundColor: C.COLORS.netIn },
      { label: "Out", data: series(times, points, (p) => p.network_out), borderColor: C.COLORS.netOut, backgroundColor: C.COLORS.netOut },
    ], rate);
    charts.disk.options.plugins.tooltip.callbacks.label = rateLabel;
    charts.network.options.plugins.tooltip.callbacks.label = rateLabel;

    const span = spanS * 1000;
    buckets.memory = new C.Buckets(charts.memory, stepMs, span, ["mean"]);
    buckets.disk = new C.Buckets(charts.disk, stepMs, span, ["mean", "mean"]);
    buckets.network = new C.Buckets(charts.network, stepMs, span, ["mean", "mean"]);
  }

  function forgetResources() {
    for (const name of ["memory", "disk", "network"]) {
      if (charts[name]) charts[name].destroy();
      delete charts[name];
      delete buckets[name];
    }
  }

  function loaded(promise, what) {
    promise.catch((error) => {
      state.historyErrors += 1;
      console.warn("Could not load the " + what + " history:", error);
    });
  }

  // -- live updates -------------------------------------------------------------

  function extend(live) {
    const t = live.timestampMs;
    if (buckets.cpu && live.cpu !== null) {
      buckets.cpu.add(t, [live.cpu, live.cap, live.isPeak ? 100 : null]);
    }
    if (buckets.trend && live.avgMean !== null) {
      buckets.trend.add(t, [live.avgMean, S.avgMax]);
      const left = live.avgLeft ?? S.avgMax - live.avgMean;
      const below = C.COLORS[budgetLevel(left)];
      charts.trend.data.datasets[0].fill = { target: 1, above: C.COLORS.red, below };
    }
    if (buckets.peak && live.cpu !== null) buckets.peak.add(t, [live.isPeak ? 1 : 0]);
    if (buckets.memory) buckets.memory.add(t, [live.memory]);
    if (buckets.disk) buckets.disk.add(t, [live.diskRead, live.diskWrite]);
    if (buckets.network) buckets.network.add(t, [live.netIn, live.netOut]);
    for (const chart of Object.values(charts)) chart.update("none");
  }

  function apply(message) {
    if (!message || message.type !== "monitoring_update" || !message.data) return;
    const live = normalise(message.data);
    state.messages += 1;
    if (live.ageS !== null) {
      state.ageS = live.ageS;
      state.ageAt = Date.now();
    }
    showFigures(live);
    showPeakProgress(live.peakUsed);
    showHeartbeat();
    // A stopped scheduler's row is pushed again each second: draw it once.
    if (live.timestampMs !== null && live.timestampMs !== state.lastTs) {
      state.lastTs = live.timestampMs;
      extend(live);
    }
  }

  function socketState(text) {
    const element = document.getElementById("socket-state");
    if (!element) return;
    const labels = { open: "live", connecting: "connecting…", closed: "reconnecting…" };
    element.textContent = labels[text] || text;
    element.className = text === "open" ? "text-success" : "text-warning";
  }

  // -- HTMX swaps: destroy first, create after ----------------------------------

  document.body.addEventListener("htmx:beforeSwap", (event) => {
    if (!event.detail.shouldSwap) return;
    const target = event.detail.target;
    if (target && target.id === "resources") forgetResources();
    C.destroyWithin(target);
  });
  document.body.addEventListener("htmx:beforeCleanupElement", (event) => {
    C.destroyWithin(event.detail.elt);
  });
  htmx.onLoad((element) => {
    if (element.id === "resources" && !charts.memory) loaded(resourceCharts(element), "resources");
  });

  // -- start --------------------------------------------------------------------

  showPeakProgress(num(initial.window_24h_peak));
  showHeartbeat();
  setInterval(showHeartbeat, 1000);
  loaded(cpuChart(), "last hour");
  loaded(trendChart(), "average");
  loaded(peakChart(), "peak");
  loaded(resourceCharts(document.getElementById("resources")), "resources");

  const socket = new site.LiveSocket(site.config.monitoringSocket, {
    onMessage: apply,
    onState: socketState,
  });

  site.dashboard = {
    apply,
    socket,
    charts,
    state,
    chartCount: () => Object.keys(Chart.instances).length,
    pointCount: () => Object.values(charts).reduce(
      (sum, chart) => sum + chart.data.datasets.reduce((n, ds) => n + ds.data.length, 0), 0),
  };
})();
