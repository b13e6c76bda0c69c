// One person: totals, models, denials, their requests (intent -> decision -> completion),
// and their evidence to take away.
import { download, getJSON } from "../lib/api.js";
import { card, category, cost, dl, h, num, reasons, requestLink, row, table, time, viewLink } from "../lib/dom.js";
import { exportButtons } from "./records.js";

// Records of one page (newest first) grouped per request, in the order the page lists them.
export function groupByRequest(records) {
  const groups = new Map();
  for (const r of records) {
    if (!groups.has(r.request_id)) groups.set(r.request_id, []);
    groups.get(r.request_id).push(r);
  }
  return [...groups.entries()].map(([id, recs]) => ({ id, recs: recs.slice().reverse() }));
}

function requestItem(g) {
  const last = g.recs[g.recs.length - 1];
  const what = last.what || {}, out = last.outcome || {};
  const steps = g.recs.map((r) => h("span", { class: "step " + category(r) }, r.event)).reduce(
    (acc, s, i) => (i ? [...acc, " → ", s] : [s]), []);
  return h("li", { class: "req " + category(last), dataset: { requestId: g.id } },
    requestLink(g.id, time(g.recs[0].time)), " ", h("span", { class: "api" }, what.api || ""),
    " ", what.model_requested || "", " ", h("span", { class: "steps" }, steps),
    out.tokens_in != null ? ` · ${num(out.tokens_in)}/${num(out.tokens_out)} tokens` : "",
    out.cost_usd != null ? " · " + cost(out.cost_usd) : "",
    reasons(last.decision) ? h("span", { class: "why" }, " · " + reasons(last.decision)) : "");
}

export async function render(main, params, ctx) {
  const user = params.get("user");
  if (!user) { main.append(h("p", {}, "No user given.")); return; }
  // Both at once: the page of records does not wait for the totals (PostgreSQL runs them in
  // parallel; SQLite's one reader connection takes them in turn).
  const [doc, page] = await Promise.all([getJSON("/audit/v1/person", { user }),
    getJSON("/audit/v1/events", { user, limit: "200", cursor: params.get("cursor") })]);
  const who = doc.who;
  main.append(h("h2", {}, "Person: ", who.subject || user, who.email && who.email !== who.subject ? ` (${who.email})` : ""));
  if (!doc.found) { main.append(h("p", {}, "No records for this user.")); ctx.say(""); return; }
  const t = doc.totals;
  main.append(dl([["name", who.name], ["e-mail", who.email], ["issuer", who.issuer], ["teams", who.teams],
    ["groups", who.groups], ["client app", who.client_id], ["kind", who.kind], ["last seen", time(doc.last_seen)]]));
  main.append(h("div", { class: "cards" },
    card("requests", num(t.requests)), card("denials", num(t.denied)), card("errors", num(t.errors + t.rejected)),
    card("tokens in/out", num(t.tokens_in) + " / " + num(t.tokens_out)), card("cost", cost(t.cost_usd))));
  const evidence = h("section", { class: "evidence", "aria-label": "Evidence" },
    h("h3", {}, "Export this person's evidence"),
    h("p", {}, "The signed bundle holds every record of this person with the Merkle proof that none is missing " +
      "up to the last checkpoint; check it offline with ", h("code", {}, "regogate audit verify --bundle FILE --public-key KEY"), "."),
    h("button", { type: "button", id: "export-bundle", onclick: () => download("/audit/v1/bundle", { user },
      "regogate-evidence-" + user + ".json").catch((e) => ctx.say(e.message, true)) }, "Signed evidence bundle (JSON)"),
    exportButtons({ user, reads: "show" }, ctx.say, "All records:"));
  main.append(evidence);
  main.append(h("div", { class: "grid" },
    table("Models used", ["model", "requests", "denied", "tokens", "cost"], doc.models.map((m) => row([
      viewLink({ view: "records", user, model: m.model }, m.model), num(m.requests), num(m.denied),
      num(m.tokens_in + m.tokens_out), cost(m.cost_usd)])), { id: "person-models" }),
    table("Denials", ["time", "model", "reasons"], doc.denials.map((d) => row([
      requestLink(d.request_id, time(d.time)), d.model || d.api || "",
      d.reasons.map((r) => r.code + (r.message ? " — " + r.message : "")).join("; ")])), { id: "person-denials" })));
  const groups = groupByRequest(page.data);
  main.append(h("h3", {}, "Requests"), h("p", {}, `${num(page.total)} record(s); this page groups ${num(page.count)} into ${groups.length} request(s).`),
    h("ol", { id: "person-timeline", class: "timeline" }, groups.map(requestItem)),
    page.next_cursor ? h("nav", { class: "pager" }, viewLink({ view: "person", user, cursor: page.next_cursor }, "Older requests »", { id: "next-page" })) : "");
  ctx.say("");
}
