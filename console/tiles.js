// A dashboard on its 12-column grid: each tile from its query's data (or its error), with
// the query's freshness. Line, area and bar through uPlot (vendored); pie as SVG.

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#3b5b7a", "#7a93ab", "#b6c4d2", "#1f2f40", "#5c7c99", "#95a9bd", "#d3dce5"];

export function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

const num = (v) => (typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" && !isNaN(+v) ? +v : null);

export function fmt(v) {
  const n = num(v);
  if (n === null) return v == null ? "" : String(v);
  return Math.abs(n) >= 1000 ? n.toLocaleString(undefined, { maximumFractionDigits: 0 }) : n.toLocaleString(undefined, { maximumFractionDigits: 2 });
}

function col(data, name) {
  const i = data.columns.findIndex((c) => c.name === name);
  if (i < 0) throw new Error("no column `" + name + "` in the result");
  return data.rows.map((r) => r[i]);
}

function freshness(meta) {
  if (!meta) return "";
  const parts = [];
  parts.push(meta.cache_hit ? "cached" : "live");
  if (meta.cached_at) parts.push("at " + new Date(meta.cached_at).toLocaleTimeString());
  if (meta.duration_ms != null) parts.push(meta.duration_ms + " ms");
  if (meta.row_count != null) parts.push(meta.row_count + " rows");
  return parts.join(" · ");
}

// Minimal markdown for text tiles: paragraphs, **bold**, *italic*, `code`; never HTML.
function markdown(text) {
  const out = document.createDocumentFragment();
  for (const para of String(text || "").split(/\n\s*\n/)) {
    const p = el("p");
    const re = /(\*\*[^*]+\*\*|\*[^*]+\*|`[^`]+`)/g;
    let last = 0, m;
    while ((m = re.exec(para))) {
      p.append(para.slice(last, m.index));
      const t = m[0];
      if (t.startsWith("**")) p.append(el("strong", { text: t.slice(2, -2) }));
      else if (t.startsWith("`")) p.append(el("code", { text: t.slice(1, -1) }));
      else p.append(el("em", { text: t.slice(1, -1) }));
      last = m.index + t.length;
    }
    p.append(para.slice(last));
    out.append(p);
  }
  return out;
}

function table(tile, data) {
  const names = tile.columns && tile.columns.length ? tile.columns : data.columns.map((c) => c.name);
  const idx = names.map((n) => {
    const i = data.columns.findIndex((c) => c.name === n);
    if (i < 0) throw new Error("no column `" + n + "` in the result");
    return i;
  });
  const t = el("table", { class: "grid-table" });
  t.append(el("thead", null, el("tr", null, ...names.map((n) => el("th", { text: n })))));
  const body = el("tbody");
  for (const r of data.rows.slice(0, 200)) body.append(el("tr", null, ...idx.map((i) => el("td", { text: fmt(r[i]) }))));
  t.append(body);
  return el("div", { class: "scroll" }, t);
}

function pie(tile, data) {
  const labels = col(data, tile.label);
  const values = col(data, tile.value).map((v) => num(v) || 0);
  const total = values.reduce((a, b) => a + b, 0) || 1;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "-1.1 -1.1 2.2 2.2");
  svg.setAttribute("class", "pie");
  let a = -Math.PI / 2;
  const legend = el("ul", { class: "legend" });
  values.forEach((v, i) => {
    const b = a + (v / total) * 2 * Math.PI;
    const large = b - a > Math.PI ? 1 : 0;
    const path = document.createElementNS(SVG, "path");
    const d = values.length === 1
      ? "M 1 0 A 1 1 0 1 1 -1 0 A 1 1 0 1 1 1 0 Z"
      : `M 0 0 L ${Math.cos(a)} ${Math.sin(a)} A 1 1 0 ${large} 1 ${Math.cos(b)} ${Math.sin(b)} Z`;
    path.setAttribute("d", d);
    path.setAttribute("fill", PALETTE[i % PALETTE.length]);
    const title = document.createElementNS(SVG, "title");
    title.textContent = labels[i] + ": " + fmt(v);
    path.append(title);
    svg.append(path);
    const sw = el("span", { class: "swatch c" + (i % PALETTE.length) });
    legend.append(el("li", null, sw, `${labels[i]} ${Math.round((v / total) * 100)}%`));
    a = b;
  });
  return el("div", { class: "pie-wrap" }, svg, legend);
}

// Line, area and bar: x as time when its values read as dates, else as categories.
function chart(tile, data, box) {
  const xs = col(data, tile.x);
  const ys = Array.isArray(tile.y) ? tile.y : [tile.y];
  const times = xs.map((v) => (typeof v === "string" ? Date.parse(v) : NaN));
  const isTime = xs.length > 0 && times.every((t) => !isNaN(t));
  let categories = [];
  let keys;
  const seriesData = [];
  const seriesNames = [];
  if (tile.series) {
    const sv = col(data, tile.series);
    const yv = col(data, ys[0]);
    keys = [...new Set(xs.map(String))];
    const names = [...new Set(sv.map(String))];
    for (const n of names) {
      const m = new Map();
      xs.forEach((x, i) => { if (String(sv[i]) === n) m.set(String(x), num(yv[i])); });
      seriesData.push(keys.map((k) => (m.has(k) ? m.get(k) : null)));
      seriesNames.push(n);
    }
  } else {
    keys = xs.map(String);
    for (const y of ys) { seriesData.push(col(data, y).map(num)); seriesNames.push(y); }
  }
  let xv;
  if (isTime) xv = keys.map((k) => Date.parse(k) / 1000);
  else { categories = keys; xv = keys.map((_, i) => i); }
  const order = xv.map((_, i) => i).sort((a, b) => xv[a] - xv[b]);
  const aligned = [order.map((i) => xv[i]), ...seriesData.map((s) => order.map((i) => s[i]))];
  const bars = tile.type === "bar" && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.7 / Math.max(1, seriesNames.length), 60] }) : null;
  const series = [{}].concat(seriesNames.map((n, i) => ({
    label: n,
    stroke: PALETTE[i % PALETTE.length],
    width: tile.type === "bar" ? 0 : 2,
    fill: tile.type === "line" ? undefined : PALETTE[i % PALETTE.length] + (tile.type === "area" ? "55" : "dd"),
    paths: bars || undefined,
    points: { show: false },
  })));
  const width = Math.max(200, box.clientWidth - 16);
  const height = Math.max(120, box.clientHeight - 70);
  const opts = {
    width, height, series,
    scales: { x: { time: isTime } },
    axes: [
      isTime ? {} : { values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) && categories[t] != null ? categories[t] : "")) },
      { values: (u, ticks) => ticks.map(fmt), size: 80 },
    ],
    legend: { show: seriesNames.length > 1 },
  };
  if (!isTime) opts.scales.x.range = (u, min, max) => [min - 0.5, max + 0.5];
  else if (tile.type === "bar" && aligned[0].length > 1) {
    // Half a step either side, so the first and last bars are whole.
    const step = (aligned[0][aligned[0].length - 1] - aligned[0][0]) / (aligned[0].length - 1);
    opts.scales.x.range = (u, min, max) => [min - step / 2, max + step / 2];
  }
  const holder = el("div", { class: "chart" });
  box.append(holder);
  new window.uPlot(opts, aligned, holder);
}

// Renders `spec` (the parsed YAML) with `data` (the data route's answer) into `grid`.
export function render(grid, spec, data) {
  grid.replaceChildren();
  const queries = (data && data.queries) || {};
  for (const tile of spec.layout || []) {
    const p = tile.position || { x: 0, y: 0, w: 12, h: 2 };
    const box = el("div", { class: "tile tile-" + tile.type, "data-tile": tile.id, "data-type": tile.type });
    box.style.gridColumn = `${p.x + 1} / span ${p.w}`;
    box.style.gridRow = `${p.y + 1} / span ${p.h}`;
    box.append(el("div", { class: "tile-title", text: tile.title || tile.id }));
    grid.append(box);
    const q = tile.query ? queries[tile.query] : null;
    try {
      if (tile.type === "text") {
        box.append(el("div", { class: "md" }, markdown(tile.text)));
        box.dataset.state = "ok";
        continue;
      }
      if (!q) throw new Error("no data for query `" + tile.query + "`");
      if (q.error) throw new Error(q.error.detail || q.error.message || q.error.code || JSON.stringify(q.error));
      if (tile.type === "kpi") box.append(el("div", { class: "kpi", text: fmt(col(q, tile.value)[0]) }));
      else if (tile.type === "table") box.append(table(tile, q));
      else if (tile.type === "pie") box.append(pie(tile, q));
      else chart(tile, q, box);
      box.dataset.state = "ok";
      box.dataset.rows = String(q.rows.length);
      box.append(el("div", { class: "fresh muted", text: freshness(q.metadata) }));
    } catch (e) {
      box.dataset.state = "error";
      box.append(el("div", { class: "tile-error", text: e.message }));
    }
  }
}
