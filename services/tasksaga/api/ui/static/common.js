// Shared by the dashboard's pages: the session (a credential kept in sessionStorage), the
// API calls (every one with the credential in a header), and DOM building that only ever
// creates text nodes and attributes: no HTML string reaches the page (the CSP requires
// Trusted Types, so assigning an HTML string to an element would throw).

const STORAGE_KEY = "tasksaga.credential";

export const TERMINAL = new Set(["Completed", "Failed", "Cancelled", "CompensationFailed",
  "NeedsAttention"]);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function taskUrl(taskId) {
  return "/ui/tasks/" + encodeURIComponent(taskId);
}

export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function statusBadge(status) {
  return el("span", { class: "badge status-" + String(status).toLowerCase() }, status);
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function credential() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
    return stored && typeof stored.value === "string" ? stored : null;
  } catch {
    return null;
  }
}

function authHeaders() {
  const stored = credential();
  if (!stored) return {};
  return stored.kind === "apikey" ? { "X-API-Key": stored.value }
    : { Authorization: "Bearer " + stored.value };
}

let onUnauthenticated = () => {};
let signedIn = () => false;

// False once the session ended: timers and streams stop calling the API.
export function isSignedIn() {
  return signedIn();
}

// Every call: same origin, the credential in a header, never a cookie, never cached.
export async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Accept: "application/json", ...authHeaders(), ...(options.headers || {}) },
    credentials: "omit",
    cache: "no-store",
  });
  if (response.status === 204) return null;
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail
      : `the API answered ${response.status}`;
    if (response.status === 401) onUnauthenticated(detail);
    throw new ApiError(response.status, detail);
  }
  return body;
}

// Shows the sign-in form until a credential the API accepts is stored, then calls
// ready(whoami). A 401 later (an expired token) brings the form back.
export function startSession(ready) {
  const signIn = document.getElementById("sign-in");
  const app = document.getElementById("app");
  const session = document.getElementById("session");
  const error = document.getElementById("sign-in-error");
  const form = document.getElementById("sign-in-form");

  function showSignIn(reason) {
    sessionStorage.removeItem(STORAGE_KEY);
    app.hidden = true;
    session.hidden = true;
    signIn.hidden = false;
    error.textContent = reason || "";
    document.getElementById("credential").focus();
  }
  onUnauthenticated = (detail) => showSignIn("Signed out: " + detail);
  signedIn = () => credential() !== null && !app.hidden;

  let started = false;

  async function enter() {
    const whoami = await api("/whoami");
    document.getElementById("who").textContent =
      `${whoami.subject} · tenant ${whoami.tenant}` +
      (whoami.roles.length ? ` · ${whoami.roles.join(", ")}` : "");
    signIn.hidden = true;
    session.hidden = false;
    if (started) {
      // Signed in again after a 401: start afresh, nothing kept from the last session.
      location.reload();
      return;
    }
    started = true;
    app.hidden = false;
    ready(whoami);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const kind = form.elements.kind.value === "apikey" ? "apikey" : "bearer";
    const value = form.elements.credential.value.trim();
    if (!value) {
      error.textContent = "Paste a token or an API key.";
      return;
    }
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ kind, value }));
    form.elements.credential.value = "";
    try {
      await enter();
    } catch (failure) {
      showSignIn(failure instanceof ApiError && failure.status === 401
        ? "The API refused this credential: " + failure.message : String(failure.message));
    }
  });
  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(STORAGE_KEY);
    location.reload(); // drops every stream, timer and row of the last identity
  });

  if (credential()) {
    enter().catch((failure) => showSignIn(String(failure.message)));
  } else {
    showSignIn("");
  }
}
