// regogate auditor workspace: plain JS modules, no build step. The view and its filters live
// in the query string (/audit/?view=records&user=alice...), so every screen is a shareable
// URL; links are real <a href> elements and a plain click navigates in-page. Sign-in and the
// session are session.js's business.
import { currentUser, mountSessionHeader } from "./session.js";
import { getJSON } from "./lib/api.js";
import * as overview from "./views/overview.js";
import * as person from "./views/person.js";
import * as records from "./views/records.js";
import * as request from "./views/request.js";

const VIEWS = { overview, records, person, request };
const $ = (sel) => document.querySelector(sel);
const main = $("#view");
let verifying = null;

function say(text, isError) {
  const status = $("#status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

// The trail's verification, shared by the header badge and the overview sentence.
async function verify(force) {
  if (verifying && !force) return verifying;
  const badge = $("#chain");
  badge.dataset.state = "unknown";
  badge.textContent = "chain: checking…";
  verifying = getJSON("/audit/v1/verify").then((report) => {
    badge.dataset.state = report.valid ? "valid" : "invalid";
    badge.textContent = report.valid
      ? "chain: valid (" + report.records + " records, " + report.checkpoints_verified + " checkpoints)"
      : "chain: INVALID — " + report.error.kind + " at seq " + report.error.seq + ": " + report.error.message;
    return report;
  }, (e) => { badge.dataset.state = "error"; badge.textContent = "chain: " + e.message; verifying = null; return null; });
  return verifying;
}

function navigate(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== "") q.set(k, v);
  history.pushState(null, "", "/audit/?" + q.toString());
  render(true);
}

const ctx = { say, navigate, verify };

async function render(moveFocus) {
  const params = new URLSearchParams(window.location.search);
  const name = VIEWS[params.get("view")] ? params.get("view") : "overview";
  for (const a of document.querySelectorAll("header nav a")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  main.replaceChildren();
  delete main.dataset.ready;
  main.dataset.view = name;
  if (!(await currentUser())) {
    main.dataset.ready = "signed-out";
    say("Sign in to read the audit trail.");
    return;
  }
  say("loading…");
  try {
    await VIEWS[name].render(main, params, ctx);
    main.dataset.ready = "true";
    if (name !== "overview") verify();  // once per page load (cached), the badge re-checks
  } catch (e) {
    main.dataset.ready = e.status === 401 ? "signed-out" : "error";
    if (e.status !== 401) say(e.message, true);  // 401: the session handler has said why
  }
  if (moveFocus) main.focus();
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[href]");
  if (!a || a.hasAttribute("download") || a.target || ev.button !== 0 ||
      ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const url = new URL(a.href, window.location.href);
  if (url.origin !== window.location.origin || url.pathname !== "/audit/") return;
  ev.preventDefault();
  history.pushState(null, "", url.pathname + url.search);
  render(true);
});
window.addEventListener("popstate", () => render(true));
$("#chain").addEventListener("click", () => verify(true));
mountSessionHeader($("#auth"));
document.addEventListener("regogate:session", (ev) => {
  if (ev.detail && !ev.detail.signed_in) {  // signed out or expired: nothing stays on screen
    main.replaceChildren();
    main.dataset.ready = "signed-out";
    verifying = null;
    $("#chain").dataset.state = "unknown";
    $("#chain").textContent = "chain: not checked";
    const expired = ev.detail.reason === "expired";
    say(expired ? "Your session has expired: sign in again." : "Sign in to read the audit trail.", expired);
  }
});
render(false);
