// Calls to /audit/v1. The credential stays in this page's memory: the bearer token is taken
// from the paste field or the URL fragment (#token=..., never sent to a server) and sent only
// as "Authorization: Bearer".

let token = "";

export function setToken(t) { token = t || ""; }
export function hasCredentials() { return token !== ""; }

export function takeFragmentToken() {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const t = params.get("token");
  if (t) {
    token = t;
    history.replaceState(history.state, "", window.location.pathname + window.location.search);
  }
}

export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

export async function call(path, params) {
  if (!token) {
    const err = new Error("paste an auditor's bearer token first");
    err.status = 401;
    throw err;
  }
  const resp = await fetch(path + qs(params), {
    headers: { Authorization: "Bearer " + token }, cache: "no-store",
  });
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

// A file from the API saved by the browser (the token cannot ride on a plain link).
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
