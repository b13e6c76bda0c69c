// One request: who, what, the decision and its outcome, the content the audit level kept,
// and every record of it as stored.
import { getJSON } from "../lib/api.js";
import { category, cost, dl, h, num, personLink, time } from "../lib/dom.js";

const pick = (recs, f) => { for (const r of recs) { const v = f(r); if (v != null) return v; } return null; };

function json(v) { return h("pre", {}, JSON.stringify(v, null, 2)); }

function whoSection(who) {
  return h("section", { id: "req-who" }, h("h3", {}, "Who"), dl([
    ["subject", personLink(who, who.subject)], ["e-mail", who.email], ["name", who.name], ["issuer", who.issuer],
    ["kind", who.kind], ["groups", who.groups], ["teams", who.teams], ["client app", who.client_id],
    ["actor (delegation)", who.actor ? JSON.stringify(who.actor) : null], ["source ip", who.source_ip]]));
}

function whatSection(recs) {
  const what = Object.assign({}, ...recs.map((r) => r.what || {}));
  const out = Object.assign({}, ...recs.map((r) => r.outcome || {}));
  const cache = pick(recs, (r) => r.extra && r.extra.cache);
  const mcp = pick(recs, (r) => r.extra && r.extra.mcp);
  const rerouted = what.model_served && what.model_requested && what.model_served !== what.model_requested;
  return h("section", { id: "req-what" }, h("h3", {}, "What"), dl([
    ["API", what.api], ["method", what.method && what.method + " " + (what.path || "")],
    ["MCP", mcp ? [mcp.server, mcp.method, mcp.tool || mcp.prompt || mcp.resource_uri].filter(Boolean).join(" · ") : null],
    ["model requested", what.model_requested], ["model served", what.model_served],
    ["rerouted / fallback", rerouted ? `yes: ${what.model_requested} → ${what.model_served}` : (what.model_served ? "no" : null)],
    ["provider", what.provider], ["deployment", what.deployment], ["stream", what.stream == null ? null : String(what.stream)],
    ["parameters (digest)", what.params_digest], ["response id", what.response_id],
    ["status", out.status], ["error", out.error_code && out.error_code + ": " + (out.error_message || "")],
    ["tokens in / out", out.tokens_in != null ? `${num(out.tokens_in)} / ${num(out.tokens_out)}${out.tokens_estimated ? " (estimated)" : ""}` : null],
    ["cost", out.cost_usd != null ? cost(out.cost_usd) : null],
    ["latency", out.latency_ms != null ? Number(out.latency_ms).toFixed(1) + " ms" : null],
    ["cache", cache ? (cache.hit ? "hit" : "miss") + (cache.mode ? ` (${cache.mode})` : "") +
      (cache.saved_cost_usd ? `, saved ${cost(cache.saved_cost_usd)}` : "") : null]]));
}

function decisionSection(recs) {
  const dec = pick(recs, (r) => r.decision);
  const id = pick(recs, (r) => r.decision_id);
  const findings = pick(recs, (r) => r.extra && r.extra.findings);
  const divergence = recs.filter((r) => r.event === "shadow.divergence").map((r) => r.extra);
  if (!dec) return h("section", { id: "req-decision" }, h("h3", {}, "Decision"), h("p", {}, "No policy decision was made (refused before policy)."));
  return h("section", { id: "req-decision" }, h("h3", {}, "Decision"), dl([
    ["decision", h("strong", { class: dec.allow ? "allow" : "deny" }, dec.allow ? "allow" : "deny")],
    ["reasons", (dec.reasons || []).length ? h("ul", {}, dec.reasons.map((r) => h("li", {}, h("code", {}, r.code), r.message ? " — " + r.message : ""))) : "none"],
    ["obligations applied", Object.keys(dec.obligations || {}).length ? json(dec.obligations) : "none"],
    ["findings by type", findings ? Object.entries(findings).map(([k, n]) => `${k}: ${n}`).join(", ") : "none"],
    ["policy revision", dec.policy_revision], ["engine", dec.engine], ["decision id", id],
    ["engine decision id", dec.engine_decision_id],
    ["shadow divergence", divergence.length ? json(divergence) : "none"]]));
}

function contentSection(recs) {
  // The intent holds the prompt, the completion the answer (and the prompt again): merged.
  const seen = recs.map((r) => r.content).filter(Boolean);
  const parts = seen.length ? [Object.assign({}, ...seen)] : [];
  const mode = parts.length ? parts[0].mode : null;
  const body = !parts.length ? h("p", {}, "No content recorded.")
    : mode === "none" ? h("p", {}, "The audit level for this request kept no content.")
    : mode === "digest" ? dl(parts.flatMap((c) => [["prompt SHA-256", c.prompt_sha256], ["response SHA-256", c.response_sha256]]))
    : h("div", {}, parts.map((c) => [c.prompt != null ? [h("h4", {}, "Prompt (" + c.mode + ")"), json(c.prompt)] : null,
      c.response != null ? [h("h4", {}, "Response (" + c.mode + ")"), json(c.response)] : null]));
  return h("section", { id: "req-content" }, h("h3", {}, "Content", mode ? ` (audit level: ${mode})` : ""), body);
}

export async function render(main, params, ctx) {
  const id = params.get("id");
  const doc = await getJSON("/audit/v1/events", { request_id: id, reads: "show", order: "asc", limit: "200" });
  main.append(h("h2", {}, "Request ", h("code", {}, id)));
  if (!doc.data.length) { main.append(h("p", {}, "No records for this request id.")); ctx.say(""); return; }
  const recs = doc.data;
  const last = recs[recs.length - 1];
  main.append(h("p", { id: "req-summary", class: "summary " + category(last) },
    `${recs.map((r) => r.event).join(" → ")} · ${category(last) || "no decision"} · ${time(recs[0].time)}`));
  main.append(h("div", { class: "grid" }, whoSection(last.who || {}), whatSection(recs), decisionSection(recs)),
    contentSection(recs));
  main.append(h("section", { id: "req-records" }, h("h3", {}, "Records as stored"),
    recs.map((r) => h("details", {}, h("summary", {}, `seq ${r.chain.seq} · ${r.event} · ${time(r.time)}`), json(r)))));
  ctx.say("");
}
