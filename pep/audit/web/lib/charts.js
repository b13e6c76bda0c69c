// Time-series charts with uPlot (vendored, MIT; see vendor/README.md).
import uPlot from "../vendor/uplot/uPlot.esm.js";

const COLOURS = ["#2f6fb3", "#c0392b", "#d68910", "#1e8449", "#7d3c98"];

// "2025-01-31" or "2025-01-31T10" (the API's bucket labels) -> epoch seconds.
export function bucketTime(t) {
  const full = t.length === 10 ? t + "T00:00:00Z" : t + ":00:00Z";
  return Date.parse(full) / 1000;
}

export function timeChart(container, title, buckets, series) {
  const width = Math.max(280, Math.min(container.clientWidth || 720, 1100));
  const data = [buckets.map((b) => bucketTime(b.t)), ...series.map((s) => buckets.map(s.value))];
  const opts = {
    title,
    width,
    height: 220,
    scales: { x: { time: true } },
    series: [{}, ...series.map((s, i) => ({
      label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2,
      points: { show: buckets.length < 60 },
      scale: s.scale || "y",
    }))],
    axes: [{}, { scale: "y" }, ...(series.some((s) => s.scale === "usd")
      ? [{ scale: "usd", side: 1, grid: { show: false }, values: (u, v) => v.map((x) => "$" + x) }] : [])],
  };
  return new uPlot(opts, data, container);
}
