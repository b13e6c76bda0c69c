// Calls to /audit/v1 through the workspace session (session.js: the HttpOnly session cookie
// plus the CSRF header; the page never holds a token).
import { apiFetch } from "../session.js";

export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

export async function call(path, params) {
  const resp = await apiFetch(path + qs(params));
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    try { const body = await resp.json(); msg = resp.status + ": " + body.error.message; } catch (e) { /* not JSON */ }
    const err = new Error(msg);
    err.status = resp.status;
    throw err;
  }
  return resp;
}

export async function getJSON(path, params) {
  return (await call(path, params)).json();
}

// A file from the API saved by the browser: fetched with the CSRF header (which a plain link
// cannot carry), then handed to the browser as a download.
export async function download(path, params, filename) {
  const blob = await (await call(path, params)).blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
