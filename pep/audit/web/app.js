// regogate auditor view: plain JS, no build step. Sign-in, the session and the CSRF header
// are session.js's business; every API call goes through its apiFetch.
import { apiFetch, currentUser, mountSessionHeader } from "/audit/session.js";

{
  const $ = (sel) => document.querySelector(sel);
  const status = $("#status");

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  function filterQuery() {
    const q = new URLSearchParams();
    for (const el of $("#filters").elements) {
      if (el.name && el.value.trim()) q.set(el.name, el.value.trim());
    }
    return q;
  }

  async function api(path, query) {
    const url = path + (query && [...query].length ? "?" + query.toString() : "");
    const resp = await apiFetch(url);
    if (!resp.ok) {
      let msg = resp.status + " " + resp.statusText;
      try { const body = await resp.json(); msg = resp.status + ": " + body.error.message; } catch (e) { /* not JSON */ }
      const err = new Error(msg);
      err.status = resp.status;
      throw err;
    }
    return resp;
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);  // textContent: record data is never HTML
    return td;
  }

  function render(records) {
    const body = $("#timeline tbody");
    body.replaceChildren();
    for (const r of records) {
      const who = r.who || {}, what = r.what || {}, out = r.outcome || {}, dec = r.decision;
      const category = r.event === "auth.failure" ? "unauthenticated"
        : r.event === "request.rejected" ? "rejected"
        : (["policy.error", "upstream.error", "request.error"].includes(r.event) ? "error"
        : (dec ? (dec.allow ? "allow" : "deny") : ""));
      const tr = document.createElement("tr");
      tr.className = category;
      tr.dataset.requestId = r.request_id;
      const tokens = out.tokens_in != null ? out.tokens_in + "/" + out.tokens_out : "";
      const reasons = dec ? (dec.reasons || []).map((x) => x.code).join(", ") : "";
      // MCP records (what.api "mcp") name the server and the tool (or method) instead.
      const mcp = (r.extra || {}).mcp;
      const target = what.api === "mcp" && mcp
        ? "mcp:" + mcp.server + "/" + (mcp.tool || mcp.prompt || mcp.resource_uri || mcp.method || "")
        : what.model_requested || "";
      for (const v of [r.time, r.event, who.subject || who.email || "-", (who.teams || []).join(", "),
        target, category, reasons, out.status, tokens, r.request_id,
        r.decision_id, r.chain ? r.chain.seq : ""]) {
        tr.appendChild(cell(v));
      }
      body.appendChild(tr);
    }
  }

  async function search() {
    say("loading…");
    try {
      const resp = await api("/audit/v1/events", filterQuery());
      const doc = await resp.json();
      render(doc.data);
      say(doc.count + " record(s)");
    } catch (e) {
      render([]);
      say(e.message, true);
    }
  }

  async function verify() {
    const badge = $("#chain");
    badge.dataset.state = "unknown";
    badge.textContent = "chain: checking…";
    try {
      const q = new URLSearchParams();
      const f = filterQuery();
      for (const k of ["since", "until"]) if (f.get(k)) q.set(k, f.get(k));
      const report = await (await api("/audit/v1/verify", q)).json();
      badge.dataset.state = report.valid ? "valid" : "invalid";
      badge.textContent = report.valid
        ? "chain: valid (" + report.records + " records, " + report.checkpoints_verified + " checkpoints)"
        : "chain: INVALID — " + report.error.kind + " at seq " + report.error.seq + ": " + report.error.message;
    } catch (e) {
      badge.textContent = "chain: " + e.message;
    }
  }

  async function downloadCsv() {
    try {
      const q = filterQuery();
      q.delete("limit");
      const blob = await (await api("/audit/v1/export.csv", q)).blob();
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "regogate-audit.csv";
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    } catch (e) {
      say(e.message, true);
    }
  }

  $("#filters").addEventListener("submit", (ev) => { ev.preventDefault(); search(); });
  $("#verify").addEventListener("click", verify);
  $("#csv").addEventListener("click", downloadCsv);

  mountSessionHeader($("#auth"));
  document.addEventListener("regogate:session", (ev) => {
    if (ev.detail && !ev.detail.signed_in) {  // signed out or expired: nothing stays on screen
      render([]);
      $("#chain").dataset.state = "unknown";
      $("#chain").textContent = "chain: not checked";
      say(ev.detail.reason === "expired" ? "Your session has expired: sign in again."
        : "Sign in to read the audit trail.", ev.detail.reason === "expired");
    }
  });
  currentUser().then((user) => {
    if (user) search().then(verify);
    else say("Sign in to read the audit trail.");
  });
}
