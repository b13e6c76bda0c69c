// Small DOM helpers. Record data only ever becomes text nodes (never HTML).

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// A link to another workspace view: a real <a href> (new tab, copy link and keyboard work);
// app.js turns a plain click into an in-page navigation.
export function viewLink(params, text, attrs) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== "") q.set(k, v);
  return h("a", { href: "/audit/?" + q.toString(), ...(attrs || {}) }, text);
}

export function personLink(who, text) {
  const user = who && (who.subject || who.email);
  return user ? viewLink({ view: "person", user }, text || user) : "-";
}

export function requestLink(id, text) {
  return id ? viewLink({ view: "request", id }, text || id) : "";
}

export const num = (n) => (n == null ? "" : Number(n).toLocaleString("en"));
export const cost = (c) => (c == null ? "" : "$" + (c !== 0 && Math.abs(c) < 0.01 ? Number(c).toPrecision(2) : Number(c).toFixed(2)));
export const time = (t) => (t ? String(t).replace("T", " ").replace(/\.\d+Z$/, "Z") : "");

export function ago(seconds) {
  if (seconds == null) return "at an unknown time";
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return s + " seconds ago";
  if (s < 5400) return Math.round(s / 60) + " minutes ago";
  if (s < 129600) return Math.round(s / 3600) + " hours ago";
  return Math.round(s / 86400) + " days ago";
}

export function table(caption, headers, rows, attrs) {
  return h("div", { class: "scroll" },
    h("table", attrs || {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows)));
}

export function row(cells, attrs) {
  return h("tr", attrs || {}, cells.map((c) => h("td", {}, c == null ? "" : c)));
}

export function card(label, value, attrs) {
  return h("div", { class: "card", ...(attrs || {}) }, h("span", { class: "label" }, label),
    h("span", { class: "value" }, value));
}

export function dl(pairs) {
  return h("dl", {}, pairs.filter(([, v]) => v != null && v !== "" && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, Array.isArray(v) ? v.join(", ") : v)]));
}

export function category(r) {
  const dec = r.decision;
  if (r.event === "auth.failure") return "unauthenticated";
  if (r.event === "request.rejected") return "rejected";
  if (["policy.error", "upstream.error", "request.error", "request.aborted"].includes(r.event)) return "error";
  return dec ? (dec.allow ? "allow" : "deny") : "";
}

export function reasons(dec) {
  return dec ? (dec.reasons || []).map((x) => x.code).join(", ") : "";
}
