// TDS page behaviour. No inline scripts anywhere (the Content-Security-Policy forbids them):
// whatever a page needs is wired here through data attributes.
document.addEventListener("DOMContentLoaded", () => {
  // Selects that apply themselves (filters).
  document.querySelectorAll("select[data-autosubmit]").forEach((el) => {
    el.addEventListener("change", () => el.form && el.form.requestSubmit());
  });
});

// One stream of server-sent events per page (/events), shared by whatever on the page listens
// (the alerts badge on every page of a tenant, the telemetry charts): opened on first use.
// Closed when the page is left: a page kept in the back-forward cache would otherwise hold its
// connection, and after six of them the browser has none left for this site (HTTP/1.1).
const TDS = {
  source: null,
  live() {
    if (!this.source) this.source = new EventSource("/events");
    return this.source;
  },
};
window.addEventListener("pagehide", () => { if (TDS.source) TDS.source.close(); });
// Back from that cache: the page is as it was left, so load it afresh (badge, list, charts).
window.addEventListener("pageshow", (event) => { if (event.persisted && TDS.source) window.location.reload(); });

// The top bar's alerts badge: the count of active alerts of the severities the user sees
// (data-severities), kept current by `alerts` events; an open Alertas page reloads its list.
document.addEventListener("DOMContentLoaded", () => {
  const bell = document.getElementById("alert-bell");
  if (!bell) return;
  const badge = document.getElementById("alert-badge");
  const shown = (bell.dataset.severities || "").split(",").filter((s) => s);
  const list = document.getElementById("alerts-live");
  let reloading = null;
  const reload = () => {
    if (!list || reloading) return;
    reloading = fetch(window.location.href, { credentials: "same-origin", headers: { "X-TDS-Fragment": "alerts" } })
      .then((r) => r.ok ? r.text() : Promise.reject(r.status))
      .then((html) => {
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("alerts-live");
        // A form being typed into is left alone: the next event, or a reload, brings the rest.
        if (fresh && !list.contains(document.activeElement)) list.replaceChildren(...fresh.childNodes);
      })
      .catch((e) => console.error("alerts", e))
      .finally(() => { reloading = null; });
  };
  const source = TDS.live();
  source.addEventListener("alerts", (event) => {
    const counts = JSON.parse(event.data).active || {};
    const n = shown.reduce((sum, s) => sum + (counts[s] || 0), 0);
    badge.textContent = String(n);
    badge.classList.toggle("d-none", n === 0);
    bell.dataset.count = String(n);
    reload();
  });
  source.addEventListener("open", () => { bell.dataset.live = "true"; });
});

// Telemetria: charts from /telemetry/data, kept current by server-sent events from /events.
// One y axis per unit (two units never share an axis); missing buckets are null, so gaps show.
document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("telemetry");
  if (!root || typeof Chart === "undefined") return;
  const lang = root.dataset.lang || "pt-BR";
  const palette = ["#0d6efd", "#198754", "#dc3545", "#fd7e14", "#6f42c1", "#20c997", "#d63384", "#0dcaf0", "#6c757d", "#ffc107", "#6610f2", "#adb5bd"];
  const numberFormat = new Intl.NumberFormat(lang, { maximumFractionDigits: 3 });
  let data = null;
  let charts = {};

  const timeFormat = (zone, resolution) =>
    new Intl.DateTimeFormat(lang, resolution === "day"
      ? { timeZone: zone, day: "2-digit", month: "2-digit" }
      : { timeZone: zone, day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit" });

  const axes = (series, key) => {
    const scales = {};
    [...new Set(series.filter((s) => s[key].length > 0).map((s) => s.unit))].forEach((unit, i) => {
      scales["y-" + unit] = { type: "linear", position: i % 2 === 0 ? "left" : "right", title: { display: true, text: unit }, grid: { drawOnChartArea: i === 0 } };
    });
    return scales;
  };

  const build = () => {
    Object.values(charts).forEach((c) => c.destroy());
    charts = {};
    const fmt = timeFormat(data.zone, data.line_resolution);
    const x = { type: "linear", min: data.from, max: data.to, ticks: { callback: (v) => fmt.format(new Date(v)), maxTicksLimit: 8 } };
    const tooltip = { callbacks: { title: (items) => items.length ? fmt.format(new Date(items[0].parsed.x)) : "" } };
    const line = {
      type: "line",
      data: { datasets: data.series.map((s, i) => ({
        label: `${s.code} · ${s.name} (${s.unit})`, device: s.device, yAxisID: "y-" + s.unit,
        data: s.line.map(([t, v]) => ({ x: t, y: v })), borderColor: palette[i % palette.length],
        backgroundColor: palette[i % palette.length], pointRadius: data.line_resolution === "raw" ? 1.5 : 0, spanGaps: false, tension: 0.1,
      })) },
      options: { animation: false, responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
        scales: { x, ...axes(data.series, "line") }, plugins: { tooltip } },
    };
    charts.line = new Chart(document.getElementById("chart-line"), line);
    const metered = data.series.filter((s) => s.bars.length > 0);
    document.getElementById("no-consumption").classList.toggle("d-none", metered.length > 0);
    const barFmt = timeFormat(data.zone, data.bar_resolution);
    charts.bars = new Chart(document.getElementById("chart-bars"), {
      type: "bar",
      data: { datasets: metered.map((s) => ({
        label: `${s.code} (${s.unit})`, yAxisID: "y-" + s.unit, data: s.bars.map(([t, v]) => ({ x: t, y: v })),
        backgroundColor: palette[data.series.indexOf(s) % palette.length],
        barPercentage: 0.9, categoryPercentage: 1,
      })) },
      options: { animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
        scales: { x: { ...x, offset: true, ticks: { callback: (v) => barFmt.format(new Date(v)), maxTicksLimit: 8 } }, ...axes(metered, "bars") },
        plugins: { tooltip: { callbacks: { title: (items) => items.length ? barFmt.format(new Date(items[0].parsed.x)) : "" } } } },
    });
    const resolution = (r) => root.dataset["res" + r.charAt(0).toUpperCase() + r.slice(1)] || r;
    document.getElementById("line-resolution").textContent = resolution(data.line_resolution);
    document.getElementById("bar-resolution").textContent = resolution(data.bar_resolution);
    root.dataset.ready = "true";
  };

  const load = () => fetch(root.dataset.url, { credentials: "same-origin" })
    .then((r) => r.ok ? r.json() : Promise.reject(r.status))
    .then((d) => { data = d; build(); })
    .catch((e) => console.error("telemetry data", e));

  // Bucketed charts are refetched after new readings (at most every 5 s); raw ones take the
  // readings as they come.
  let refetch = null;
  const later = () => { if (!refetch) refetch = setTimeout(() => { refetch = null; load(); }, 5000); };

  const onReadings = (event) => {
    if (!data) return;
    const msg = JSON.parse(event.data);
    const tbody = document.getElementById("latest-readings");
    msg.readings.forEach((r) => {
      const s = data.series.find((s) => s.device === r.device);
      if (!s) return;
      const t = Date.parse(r.time);
      if (data.line_resolution === "raw") {
        const ds = charts.line.data.datasets.find((d) => d.device === r.device);
        if (ds) {
          ds.data.push({ x: t, y: r.value });
          ds.data.sort((a, b) => a.x - b.x);
          if (t > charts.line.options.scales.x.max) charts.line.options.scales.x.max = t;
        }
      }
      const row = document.createElement("tr");
      row.dataset.device = String(r.device);
      row.className = "tds-live-row";
      // As the server writes times: 01/12/2026 06:13:20 (no comma between date and time).
      const when = new Intl.DateTimeFormat(lang, { timeZone: data.zone, day: "2-digit", month: "2-digit", year: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }).format(new Date(t)).replace(", ", " ");
      const cells = [when, s.code, `${numberFormat.format(r.value)} ${s.unit}`];
      cells.forEach((text, i) => { const td = document.createElement("td"); td.textContent = text; td.className = i === 2 ? "text-end" : "small"; row.appendChild(td); });
      tbody.prepend(row);
      while (tbody.rows.length > 20) tbody.deleteRow(tbody.rows.length - 1);
    });
    if (data.line_resolution === "raw") charts.line.update("none");
    later();
  };

  const live = document.getElementById("live-status");
  const source = TDS.live();
  if (source.readyState === EventSource.OPEN) { live.className = "badge text-bg-success"; live.textContent = root.dataset.labelLive; }
  source.addEventListener("open", () => { live.className = "badge text-bg-success"; live.textContent = root.dataset.labelLive; });
  source.addEventListener("error", () => { live.className = "badge text-bg-secondary"; });
  source.addEventListener("readings", onReadings);
  source.addEventListener("resync", load);
  source.addEventListener("gateway", later);
  load();
});

// Sparklines: daily figures in data-spark ([[ms, value|null], …]), drawn small and without axes.
document.addEventListener("DOMContentLoaded", () => {
  if (typeof Chart === "undefined") return;
  document.querySelectorAll("canvas[data-spark]").forEach((canvas) => {
    const points = JSON.parse(canvas.dataset.spark || "[]");
    new Chart(canvas, {
      type: "bar",
      data: { labels: points.map(([t]) => t), datasets: [{ data: points.map(([, v]) => v), backgroundColor: "#0d6efd" }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: false }, tooltip: { callbacks: {
          title: (items) => items.length ? new Date(points[items[0].dataIndex][0]).toLocaleDateString(document.documentElement.lang) : "",
          label: (item) => `${item.formattedValue} ${canvas.dataset.unit || ""}` } } },
        scales: { x: { display: false }, y: { display: false, beginAtZero: true } } },
    });
  });
});

// The certificates page: active certificates by year of expiry (data-horizon [[year, count], …]);
// the years inside the renewal window (two years) in the warning colour.
document.addEventListener("DOMContentLoaded", () => {
  const canvas = document.getElementById("horizon-chart");
  if (!canvas || typeof Chart === "undefined") return;
  const years = JSON.parse(canvas.dataset.horizon || "[]");
  const soon = new Date().getFullYear() + 2;
  new Chart(canvas, {
    type: "bar",
    data: { labels: years.map(([y]) => String(y)), datasets: [{ label: canvas.dataset.label, data: years.map(([, n]) => n),
      backgroundColor: years.map(([y]) => (y <= soon ? "#ffc107" : "#0d6efd")) }] },
    options: { animation: false, responsive: true, maintainAspectRatio: false,
      plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
  });
  canvas.dataset.ready = "true";
});

// An alert's page: the device's data around the raise (data-points [[ms, value], …]), the raise
// marked by a vertical rule.
document.addEventListener("DOMContentLoaded", () => {
  const canvas = document.getElementById("alert-chart");
  if (!canvas || typeof Chart === "undefined") return;
  const points = JSON.parse(canvas.dataset.points || "[]");
  const raised = Number(canvas.dataset.raised);
  const lang = document.documentElement.lang;
  const fmt = new Intl.DateTimeFormat(lang, { timeZone: canvas.dataset.zone, day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit" });
  const marker = {
    id: "raised",
    afterDatasetsDraw(chart) {
      const x = chart.scales.x.getPixelForValue(raised);
      const { top, bottom } = chart.chartArea;
      const ctx = chart.ctx;
      ctx.save();
      ctx.strokeStyle = "#dc3545";
      ctx.setLineDash([4, 4]);
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
      ctx.restore();
    },
  };
  new Chart(canvas, {
    type: canvas.dataset.kind === "line" ? "line" : "bar",
    data: { datasets: [{ label: canvas.dataset.unit, data: points.map(([t, v]) => ({ x: t, y: v })),
      borderColor: "#0d6efd", backgroundColor: "#0d6efd", pointRadius: 1.5 }] },
    options: { animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
      scales: { x: { type: "linear", ticks: { callback: (v) => fmt.format(new Date(v)), maxTicksLimit: 6 } } },
      plugins: { legend: { display: false }, tooltip: { callbacks: { title: (items) => items.length ? fmt.format(new Date(items[0].parsed.x)) : "" } } } },
    plugins: [marker],
  });
  canvas.dataset.ready = "true";
});

// The rule editor: only the settings of the chosen kind are shown (all are, without scripts).
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-rule-form]");
  if (!form) return;
  const kind = form.querySelector("#kind");
  const show = () => form.querySelectorAll("[data-kinds]").forEach((el) => {
    el.classList.toggle("d-none", !el.dataset.kinds.split(" ").includes(kind.value));
  });
  kind.addEventListener("change", show);
  show();
});

// A notification channel's form: the fields of the chosen kind and preset (all, without scripts).
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-channel-form]");
  if (!form) return;
  const kind = form.querySelector("#kind");
  const preset = form.querySelector("#preset");
  const show = () => form.querySelectorAll("[data-for]").forEach((el) => {
    const on = el.dataset.for === kind.value || (kind.value === "webhook" && el.dataset.for === preset.value);
    el.classList.toggle("d-none", !on);
  });
  kind.addEventListener("change", show);
  preset.addEventListener("change", show);
  show();
});

// Relatórios: only the fields of the chosen scope and period are shown (all are, without
// scripts), and each section's bars are drawn from its data-labels / data-values.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-report-form]");
  if (form) {
    const scope = form.querySelector("#scope");
    const period = form.querySelector("#period");
    const show = () => {
      form.querySelectorAll("[data-scope]").forEach((el) => el.classList.toggle("d-none", el.dataset.scope !== scope.value));
      form.querySelectorAll("[data-period]").forEach((el) => el.classList.toggle("d-none", el.dataset.period !== period.value));
    };
    scope.addEventListener("change", show);
    period.addEventListener("change", show);
    show();
  }
  if (typeof Chart === "undefined") return;
  document.querySelectorAll("canvas.report-chart").forEach((canvas) => {
    const labels = JSON.parse(canvas.dataset.labels || "[]");
    const values = JSON.parse(canvas.dataset.values || "[]");
    new Chart(canvas, {
      type: "bar",
      data: { labels, datasets: [{ label: canvas.dataset.title, data: values, backgroundColor: "#0d6efd" }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
    });
    canvas.dataset.ready = "true";
  });
});
