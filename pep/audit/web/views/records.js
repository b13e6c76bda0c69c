// Records: every filter in the URL (shareable), server-side pages with keyset cursors,
// exports of exactly the filtered set.
import { download, getJSON } from "../lib/api.js";
import { category, h, num, personLink, reasons, requestLink, row, table, time, viewLink } from "../lib/dom.js";

export const FILTERS = ["user", "team", "model", "decision", "reason", "api", "event", "since", "until", "request_id"];
const DECISIONS = ["", "allow", "deny", "error", "unauthenticated", "rejected", "none"];

function filtersOf(params) {
  const out = {};
  for (const k of [...FILTERS, "reads"]) if (params.get(k)) out[k] = params.get(k);
  return out;
}

function form(filters, navigate) {
  const input = (name, label, placeholder) => h("label", {}, label,
    h("input", { name, value: filters[name] || "", placeholder: placeholder || "" }));
  const select = h("select", { name: "decision" },
    DECISIONS.map((d) => h("option", { value: d, selected: (filters.decision || "") === d }, d || "any")));
  const reads = h("input", { type: "checkbox", name: "reads", value: "show", checked: filters.reads === "show" });
  const f = h("form", { id: "filters", role: "search" },
    input("user", "User", "sub or e-mail"), input("team", "Team"), input("model", "Model"),
    h("label", {}, "Decision", select), input("reason", "Reason code"), input("api", "API", "chat.completions"),
    input("event", "Event"), input("since", "Since", "24h or 2025-01-31"), input("until", "Until"),
    input("request_id", "Request id"),
    h("label", { class: "check" }, reads, "show auditors' reads"),
    h("button", { type: "submit" }, "Search"));
  f.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const next = { view: "records" };
    for (const el of f.elements) {
      if (!el.name) continue;
      if (el.type === "checkbox") { if (el.checked) next[el.name] = el.value; continue; }
      if (el.value.trim()) next[el.name] = el.value.trim();
    }
    navigate(next);
  });
  return f;
}

// MCP records (what.api "mcp") name the server and the tool (or method) instead of a model.
export function target(r) {
  const what = r.what || {}, mcp = (r.extra || {}).mcp;
  return what.api === "mcp" && mcp
    ? "mcp:" + mcp.server + "/" + (mcp.tool || mcp.prompt || mcp.resource_uri || mcp.method || "")
    : what.model_requested || "";
}

export function recordRow(r) {
  const who = r.who || {}, what = r.what || {}, out = r.outcome || {};
  const cat = category(r);
  const tokens = out.tokens_in != null ? out.tokens_in + "/" + out.tokens_out : "";
  return row([
    requestLink(r.request_id, time(r.time)), r.event, personLink(who, who.subject || who.email),
    (who.teams || []).join(", "), target(r), what.api || "", cat, reasons(r.decision),
    out.status, tokens, requestLink(r.request_id), r.chain ? r.chain.seq : "",
  ], { class: cat, dataset: { requestId: r.request_id, seq: r.chain ? r.chain.seq : "" } });
}

export const RECORD_HEADERS = ["time", "event", "user", "teams", "model / tool", "api", "decision", "reasons",
  "status", "tokens", "request id", "seq"];

export function exportButtons(filters, say, label) {
  const go = (path, ext) => () => download(path, filters, "regogate-audit." + ext).catch((e) => say(e.message, true));
  return h("div", { class: "exports", role: "group", "aria-label": label || "Export these records" },
    h("span", {}, label || "Export these records:"),
    h("button", { type: "button", id: "export-csv", onclick: go("/audit/v1/export.csv", "csv") }, "CSV"),
    h("button", { type: "button", id: "export-jsonl", onclick: go("/audit/v1/export.jsonl", "jsonl") }, "JSONL"),
    h("button", { type: "button", id: "export-ocsf", onclick: go("/audit/v1/export.ocsf.jsonl", "ocsf.jsonl") }, "OCSF"));
}

export async function render(main, params, ctx) {
  const filters = filtersOf(params);
  const limit = params.get("limit") || "50";
  const at = Math.max(1, parseInt(params.get("at") || "1", 10) || 1);
  main.append(h("h2", {}, "Records"), form(filters, ctx.navigate));
  const doc = await getJSON("/audit/v1/events", { ...filters, limit, cursor: params.get("cursor") });
  const last = at + doc.count - 1;
  const summary = h("p", { id: "page-info" }, doc.count
    ? `Records ${num(at)}–${num(last)} of ${num(doc.total)}` : `No records match (${num(doc.total)} in total)`);
  const pager = h("nav", { class: "pager", "aria-label": "Pages" },
    at > 1 ? viewLink({ view: "records", ...filters, limit: limit !== "50" ? limit : null }, "« First page", { id: "first-page" }) : null,
    doc.next_cursor ? viewLink({ view: "records", ...filters, limit: limit !== "50" ? limit : null,
      cursor: doc.next_cursor, at: last + 1 }, "Next page »", { id: "next-page", rel: "next" }) : null);
  main.append(h("div", { class: "toolbar" }, summary, exportButtons(filters, ctx.say)),
    table(null, RECORD_HEADERS, doc.data.map(recordRow), { id: "timeline" }), pager);
  ctx.say(`${num(doc.total)} record(s)` + (filters.reads === "show" ? "" : "; auditors' reads hidden"));
}
