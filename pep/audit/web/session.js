// regogate workspace session: who is signed in, the CSRF token, sign in / sign out, and a
// fetch wrapper for the auditor API. An ES module with no dependencies; the page (and any
// rewrite of it) imports what it needs:
//
//   import { currentUser, csrfHeaders, signIn, signOut, apiFetch, mountSessionHeader }
//     from "/audit/session.js";
//
// The session itself lives in an HttpOnly cookie this script never sees. The CSRF token
// (from GET /audit/session) is kept in memory only and sent as X-CSRF-Token on every call
// that uses the session; the server refuses such calls without it (403 csrf_failed).
// When a call answers 401 (session expired, signed out elsewhere), the state is refreshed
// and a "regogate:session" event is dispatched on document with the new state.

let state = null;  // the last answer of GET /audit/session

export async function refreshSession() {
  const resp = await fetch("/audit/session", { credentials: "same-origin", cache: "no-store" });
  state = await resp.json();
  document.dispatchEvent(new CustomEvent("regogate:session", { detail: state }));
  return state;
}

export function sessionState() {
  return state;
}

// The signed-in user ({subject, issuer, name, email}) or null.
export async function currentUser() {
  if (state === null) await refreshSession();
  return state.signed_in ? state.user : null;
}

export function csrfHeaders() {
  return state && state.csrf_token ? { "X-CSRF-Token": state.csrf_token } : {};
}

export function signIn() {
  window.location.assign((state && state.login_url) || "/audit/login");
}

export async function signOut() {
  const resp = await fetch("/audit/logout", {
    method: "POST", credentials: "same-origin", cache: "no-store", headers: csrfHeaders(),
  });
  await refreshSession();
  return resp.ok;
}

// fetch() for /audit/v1/*: same-origin credentials (the session cookie) + the CSRF header.
export async function apiFetch(url, opts = {}) {
  if (state === null) await refreshSession();
  const headers = new Headers(opts.headers || {});
  for (const [name, value] of Object.entries(csrfHeaders())) headers.set(name, value);
  const resp = await fetch(url, { ...opts, headers, credentials: "same-origin", cache: "no-store" });
  if (resp.status === 401) await refreshSession();
  return resp;
}

// The header component: "Sign in with <issuer>" when signed out, "<name>" + "Sign out" when
// signed in. Expects, inside root: #whoami, a#sign-in and button#sign-out.
export function mountSessionHeader(root) {
  const who = root.querySelector("#whoami");
  const signInLink = root.querySelector("#sign-in");
  const signOutButton = root.querySelector("#sign-out");
  function render(s) {
    const signedIn = Boolean(s && s.signed_in);
    who.dataset.signedIn = String(signedIn);
    who.dataset.reason = (s && s.reason) || "";
    if (signedIn) {
      const u = s.user;
      who.textContent = "Signed in as " + (u.name || u.subject) + (u.email ? " (" + u.email + ")" : "");
      who.title = u.subject + " @ " + u.issuer;
    } else if (s && s.reason === "expired") {
      who.textContent = "Your session has expired.";
    } else if (s && !s.sign_in_enabled) {
      who.textContent = "Browser sign-in is not configured (workspace.client_id).";
    } else {
      who.textContent = "";
    }
    signInLink.hidden = signedIn || !(s && s.sign_in_enabled);
    signInLink.textContent = "Sign in with " + ((s && s.issuer_name) || "your identity provider");
    signInLink.href = (s && s.login_url) || "/audit/login";
    signOutButton.hidden = !signedIn;
  }
  signOutButton.addEventListener("click", () => { signOut(); });
  document.addEventListener("regogate:session", (ev) => render(ev.detail));
  render(state);
}
