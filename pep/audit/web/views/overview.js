// Overview: who used what, over time; what was refused and why; is the trail intact.
import { getJSON } from "../lib/api.js";
import { timeChart } from "../lib/charts.js";
import { ago, card, cost, h, num, personLink, requestLink, row, table, time, viewLink } from "../lib/dom.js";

const RANGES = [["24h", "last 24 hours"], ["7d", "last 7 days"], ["30d", "last 30 days"], ["", "all time"]];

function controls(since, bucket) {
  return h("nav", { class: "ranges", "aria-label": "Time range" },
    RANGES.map(([v, label]) => viewLink({ view: "overview", since: v, bucket },
      label, { "aria-current": since === v ? "true" : null })),
    h("span", { class: "sep" }, "|"),
    ["day", "hour"].map((b) => viewLink({ view: "overview", since, bucket: b }, "per " + b,
      { "aria-current": bucket === b ? "true" : null })));
}

export function trailSentence(report, trail) {
  const cp = trail && trail.last_checkpoint;
  const when = cp ? `The last checkpoint (seq ${num(cp.seq)}, ${cp.kind}) was signed ${ago(cp.age_s)}.`
    : "No checkpoint has been signed yet.";
  if (!report) return "The trail has not been verified yet. " + when;
  if (report.valid) {
    return `Trail verified: ${num(report.records)} records for ${num(report.users)} people are intact, ` +
      `${num(report.checkpoints_verified)} signed checkpoint(s) check out` +
      (report.unsealed_records ? `, ${num(report.unsealed_records)} newest record(s) not yet sealed by a checkpoint. ` : ". ") + when;
  }
  const e = report.error;
  return `Trail INVALID: ${e.kind} at seq ${e.seq} (${e.chain} chain): ${e.message}. ` + when;
}

function groupTable(caption, key, rows, link) {
  return table(caption, [key, "requests", "denied", "errors", "tokens", "cost"], rows.map((r) => row([
    link ? link(r[key]) : r[key], num(r.requests), num(r.denied), num(r.errors + r.rejected),
    num(r.tokens_in + r.tokens_out), cost(r.cost_usd)])));
}

export async function render(main, params, ctx) {
  const since = params.has("since") ? params.get("since") : "7d";
  const bucket = params.get("bucket") || "day";
  main.append(h("h2", {}, "Overview"), controls(since, bucket));
  const doc = await getJSON("/audit/v1/overview", { since, bucket });
  const status = h("p", { id: "trail-status", class: "trail", dataset: { state: "unknown" } },
    trailSentence(null, doc.trail));
  const t = doc.totals;
  main.append(status, h("div", { class: "cards" },
    card("requests", num(t.requests)), card("denials", num(t.denied)), card("errors", num(t.errors)),
    card("tokens", num(t.tokens)), card("cost", cost(t.cost_usd)), card("people", num(doc.users))));
  const charts = h("div", { class: "charts" });
  main.append(charts);
  const step = bucket === "hour" ? 3600 : 86400;
  if (doc.series.length) {
    const a = h("figure", { id: "chart-requests", "aria-label": "Requests, denials and errors per " + bucket });
    const b = h("figure", { id: "chart-usage", "aria-label": "Tokens and cost per " + bucket });
    charts.append(a, b);
    timeChart(a, "Requests per " + bucket, doc.series, [
      { label: "requests", value: (s) => s.requests }, { label: "denials", value: (s) => s.denied },
      { label: "errors", value: (s) => s.errors }], step);
    timeChart(b, "Tokens and cost per " + bucket, doc.series, [
      { label: "tokens", value: (s) => s.tokens }, { label: "cost (USD)", value: (s) => s.cost_usd, scale: "usd" }], step);
  } else {
    charts.append(h("p", {}, "No requests in this range."));
  }
  const decisions = Object.entries(doc.by_decision).map(([d, n]) =>
    row([viewLink({ view: "records", decision: d, since }, d), num(n)]));
  main.append(h("div", { class: "grid" },
    table("By decision", ["decision", "requests"], decisions, { id: "by-decision" }),
    groupTable("By team", "team", doc.by_team, (tm) => viewLink({ view: "records", team: tm, since }, tm)),
    groupTable("By model", "model", doc.by_model, (m) => viewLink({ view: "records", model: m, since }, m)),
    groupTable("Top users", "user", doc.top_users, (u) => personLink({ subject: u }))));
  main.append(table("Recent denials", ["time", "user", "model", "reasons"], doc.recent_denials.map((d) => row([
    requestLink(d.request_id, time(d.time)), personLink(d), d.model || d.api || "",
    d.reasons.map((r) => r.code + (r.message ? " — " + r.message : "")).join("; ")])), { id: "recent-denials" }));
  ctx.say("");
  // Verifying reads the whole trail (seconds at 100,000 records): the view is ready without
  // it and the sentence changes when the answer comes.
  ctx.verify().then((report) => {
    if (!report || !status.isConnected) return;
    status.textContent = trailSentence(report, doc.trail);
    status.dataset.state = report.valid ? "valid" : "invalid";
  });
}
