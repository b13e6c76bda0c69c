// Time-series charts with uPlot (vendored, MIT; see vendor/README.md).
import uPlot from "../vendor/uplot/uPlot.esm.js";

const COLOURS = ["#2f6fb3", "#c0392b", "#d68910", "#1e8449", "#7d3c98"];

// "2025-01-31" or "2025-01-31T10" (the API's bucket labels) -> epoch seconds.
export function bucketTime(t) {
  const full = t.length === 10 ? t + "T00:00:00Z" : t + ":00:00Z";
  return Date.parse(full) / 1000;
}

// Every bucket between the first and the last, empty ones as zero (a line never bridges a
// quiet day), and one empty bucket either side so a single point has a sensible axis.
export function filled(buckets, step) {
  if (!buckets.length) return { xs: [], rows: [] };
  const byTime = new Map(buckets.map((b) => [bucketTime(b.t), b]));
  const first = bucketTime(buckets[0].t) - step, last = bucketTime(buckets[buckets.length - 1].t) + step;
  const xs = [], rows = [];
  for (let t = first; t <= last && xs.length < 5000; t += step) { xs.push(t); rows.push(byTime.get(t) || null); }
  return { xs, rows };
}

export function timeChart(container, title, buckets, series, step) {
  const width = Math.max(280, Math.min(container.clientWidth || 720, 1100));
  const { xs, rows } = filled(buckets, step || 86400);
  const data = [xs, ...series.map((s) => rows.map((r) => (r ? s.value(r) : 0)))];
  const opts = {
    title,
    width,
    height: 220,
    scales: { x: { time: true } },
    series: [{}, ...series.map((s, i) => ({
      label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2,
      points: { show: xs.length < 60 },
      scale: s.scale || "y",
    }))],
    axes: [{}, { scale: "y" }, ...(series.some((s) => s.scale === "usd")
      ? [{ scale: "usd", side: 1, grid: { show: false }, values: (u, v) => v.map((x) => "$" + (x && Math.abs(x) < 0.01 ? x.toPrecision(2) : x.toFixed(2))), size: 70 }] : [])],
  };
  return new uPlot(opts, data, container);
}
