// The task list: filters (kept in the page's query string), newest first, paged with the
// API's cursor, refreshed every few seconds; and a form to submit a task with a JSON body.
import { api, clear, el, formatTime, isSignedIn, startSession, statusBadge, taskUrl }
  from "/ui/static/common.js";

const REFRESH_MS = 3000;
const FILTERS = ["task_type", "status", "submitted_after", "submitted_before", "idempotency_key"];

const rows = new Map(); // task_id -> the list's row document
let cursor = null;

function filtersFromForm() {
  const form = document.getElementById("filters");
  const query = new URLSearchParams();
  for (const name of FILTERS) {
    const value = form.elements[name].value.trim();
    if (!value) continue;
    // datetime-local is the browser's local time; the API wants an offset.
    query.set(name, name.startsWith("submitted_") ? new Date(value).toISOString() : value);
  }
  return query;
}

function filtersToForm(query) {
  const form = document.getElementById("filters");
  for (const name of FILTERS) {
    let value = query.get(name) || "";
    if (value && name.startsWith("submitted_")) {
      const date = new Date(value);
      value = Number.isNaN(date.getTime()) ? ""
        : new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    }
    form.elements[name].value = value;
  }
}

async function fetchPage(before) {
  const query = filtersFromForm();
  query.set("limit", "50");
  if (before) query.set("before", before);
  return api("/tasks?" + query.toString());
}

function render(changed = new Set()) {
  const body = clear(document.getElementById("task-rows"));
  const ordered = [...rows.values()].sort((a, b) =>
    b.submitted_at.localeCompare(a.submitted_at) || b.task_id.localeCompare(a.task_id));
  for (const task of ordered) {
    body.append(el("tr", { "data-task-id": task.task_id,
      class: changed.has(task.task_id) ? "changed" : null },
      el("td", {}, el("a", { href: taskUrl(task.task_id), class: "mono" }, task.task_id)),
      el("td", {}, task.task_type),
      el("td", {}, statusBadge(task.status)),
      el("td", {}, formatTime(task.submitted_at)),
      el("td", {}, formatTime(task.updated_at)),
      el("td", { class: "num" }, task.version)));
  }
  document.getElementById("no-tasks").hidden = rows.size > 0;
  document.getElementById("load-more").hidden = cursor === null;
}

function showError(failure) {
  document.getElementById("list-error").textContent = failure ? String(failure.message) : "";
}

async function reload() {
  try {
    const page = await fetchPage(null);
    rows.clear();
    for (const task of page.tasks) rows.set(task.task_id, task);
    cursor = page.next_cursor;
    showError(null);
    render();
  } catch (failure) {
    showError(failure);
  }
}

// The first page again: rows it covers are replaced (a task that left the filter goes),
// rows of later pages the user loaded stay until they are reached.
async function refresh() {
  if (!isSignedIn() || document.hidden) return;
  const live = document.getElementById("list-live");
  try {
    const page = await fetchPage(null);
    const fresh = new Map(page.tasks.map((task) => [task.task_id, task]));
    const oldest = page.tasks.length ? page.tasks[page.tasks.length - 1].submitted_at : "";
    const changed = new Set();
    for (const [id, task] of rows) {
      const covered = page.next_cursor === null || task.submitted_at >= oldest;
      if (covered && !fresh.has(id)) rows.delete(id);
    }
    for (const [id, task] of fresh) {
      const before = rows.get(id);
      if (!before || before.version !== task.version || before.status !== task.status) {
        changed.add(id);
      }
      rows.set(id, task);
    }
    if (rows.size === fresh.size) cursor = page.next_cursor;
    live.classList.remove("is-stale");
    showError(null);
    render(changed);
  } catch (failure) {
    live.classList.add("is-stale");
    showError(failure);
  }
}

async function loadMore() {
  try {
    const page = await fetchPage(cursor);
    for (const task of page.tasks) rows.set(task.task_id, task);
    cursor = page.next_cursor;
    render();
  } catch (failure) {
    showError(failure);
  }
}

function setUpFilters(types) {
  const select = document.getElementById("filter-type");
  for (const type of types) select.append(el("option", { value: type.name }, type.name));
  filtersToForm(new URLSearchParams(location.search));
  const form = document.getElementById("filters");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = filtersFromForm();
    history.replaceState(null, "", query.size ? "?" + query.toString() : location.pathname);
    reload();
  });
  document.getElementById("reset-filters").addEventListener("click", () => {
    form.reset();
    history.replaceState(null, "", location.pathname);
    reload();
  });
  document.getElementById("load-more").addEventListener("click", loadMore);
}

function setUpSubmit(types) {
  const form = document.getElementById("submit-form");
  const select = document.getElementById("submit-type");
  const hint = document.getElementById("submit-hint");
  const error = document.getElementById("submit-error");
  const submittable = types.filter((type) => type.file_fields.length === 0);
  for (const type of submittable) select.append(el("option", { value: type.name }, type.name));
  const withFiles = types.filter((type) => type.file_fields.length > 0).map((type) => type.name);
  hint.textContent = withFiles.length
    ? `Types with file fields (${withFiles.join(", ")}) are submitted through the API.` : "";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    let body;
    try {
      body = JSON.parse(document.getElementById("submit-body").value || "{}");
    } catch (failure) {
      error.textContent = "The request is not valid JSON: " + failure.message;
      return;
    }
    const headers = { "Content-Type": "application/json" };
    const key = document.getElementById("submit-key").value.trim();
    if (key) headers["Idempotency-Key"] = key;
    try {
      const accepted = await api("/tasks/" + encodeURIComponent(select.value),
        { method: "POST", headers, body: JSON.stringify(body) });
      location.assign(taskUrl(accepted.task_id));
    } catch (failure) {
      error.textContent = String(failure.message);
    }
  });
}

startSession(async () => {
  let types = [];
  try {
    types = (await api("/task-types")).task_types;
  } catch (failure) {
    showError(failure);
  }
  setUpFilters(types);
  setUpSubmit(types);
  await reload();
  setInterval(refresh, REFRESH_MS);
});
