// A task's page: status, actions, the live timeline, steps, step data, conditions and the
// audit trail. Live through a stream ticket and an EventSource (it cannot send headers);
// every event refreshes the status and the timeline.
import { ApiError, TERMINAL, api, append, clear, el, formatTime, isSignedIn, startSession,
  statusBadge } from "/ui/static/common.js";
import { drawTimeline } from "/ui/static/timeline.js";

const taskId = decodeURIComponent(location.pathname.replace(/^\/ui\/tasks\//, ""));
const base = "/tasks/" + encodeURIComponent(taskId);
const audit = new Map(); // version -> entry
const signalIds = new Map(); // signal -> the Signal-Id of the next send (dedupes a double click)
let status = null;
let timeline = null;
let source = null;
let streamEnded = false;
let refreshTimer = null;
let openSignals = "";
// Until then a stream that finds nothing after the terminal event is opened again: an
// operator's retry was just sent, and its first event may not be in the log yet.
let retryUntil = 0;

function setLive(state) {
  const live = document.getElementById("task-live");
  live.textContent = state;
  live.className = "live is-" + state;
}

function showError(message) {
  document.getElementById("task-error").textContent = message || "";
}

function json(value) {
  return value === null || value === undefined ? "—" : JSON.stringify(value, null, 2);
}

function renderFacts() {
  document.title = `${status.task_type} ${taskId} · tasksaga`;
  document.getElementById("task-type").textContent = status.task_type;
  clear(document.getElementById("task-status")).append(statusBadge(status.status));
  document.getElementById("task-id").textContent = taskId;
  const facts = [["Submitted", formatTime(status.submitted_at)],
    ["Updated", formatTime(status.updated_at)], ["Events", status.version]];
  if (status.end_reason) facts.push(["Reason", status.end_reason]);
  if (status.failure) {
    facts.push(["Failed step", status.failure.step]);
    if (status.failure.trace_id) facts.push(["Trace", status.failure.trace_id]);
  }
  const list = clear(document.getElementById("task-facts"));
  for (const [name, value] of facts) list.append(el("div", {}, el("dt", {}, name), el("dd", {}, value)));
}

function renderActions() {
  const running = ["Accepted", "New", "Running"].includes(status.status);
  document.getElementById("cancel-button").hidden =
    !(timeline && timeline.cancellable && running)
    || !document.getElementById("cancel-confirm").hidden;
  if (!running) document.getElementById("cancel-confirm").hidden = true;
  document.getElementById("retry-compensation-button").hidden = status.status !== "CompensationFailed";
  document.getElementById("retry-forward-button").hidden = status.status !== "NeedsAttention";
  renderSignals(running);
}

function renderSignals(running) {
  const stepStatus = new Map(status.steps.map((step) => [step.step, step.status]));
  const waiting = running && timeline ? timeline.lanes.filter((lane) => lane.signal
    && ["Pending", "Waiting"].includes(stepStatus.get(lane.step))).map((lane) => lane.step) : [];
  const key = waiting.join("\n");
  if (key === openSignals) return; // keep what the user is typing
  openSignals = key;
  const box = clear(document.getElementById("signals"));
  for (const signal of waiting) {
    if (!signalIds.has(signal)) signalIds.set(signal, crypto.randomUUID());
    const body = el("textarea", { rows: 2, spellcheck: "false", "aria-label": `${signal} data` }, "{}");
    const send = el("button", { type: "button", "data-signal": signal }, `Send ${signal}`);
    send.addEventListener("click", () => act(`${base}/signals/${encodeURIComponent(signal)}`, {
      headers: { "Content-Type": "application/json", "Signal-Id": signalIds.get(signal) },
      body: body.value || "{}" }, () => signalIds.set(signal, crypto.randomUUID())));
    box.append(el("div", { class: "signal" },
      el("label", {}, `Signal ${signal}`, body), send));
  }
}

function renderSteps() {
  const body = clear(document.getElementById("step-rows"));
  const data = clear(document.getElementById("step-data"));
  for (const step of status.steps) {
    const progress = typeof step.progress === "number"
      ? el("span", { class: "progress" }, el("progress", { max: 1, value: step.progress }),
        ` ${Math.round(step.progress * 100)}%`, step.progress_message ? ` · ${step.progress_message}` : "")
      : "";
    body.append(el("tr", { "data-step": step.step },
      el("td", {}, step.step), el("td", {}, statusBadge(step.status)),
      el("td", { class: "num" }, step.attempt || ""),
      el("td", {}, progress, step.error_message
        ? el("span", { class: "error-text" }, `${step.error_type}: ${step.error_message}`) : "")));
    if (step.data !== null && step.data !== undefined) {
      data.append(el("details", { open: true }, el("summary", {}, step.step), el("pre", {}, json(step.data))));
    }
  }
  if (!data.childElementCount) data.append(el("p", { class: "muted" }, "No step has recorded data yet."));
  const conditions = clear(document.getElementById("conditions"));
  for (const condition of status.conditions) {
    conditions.append(el("div", { class: "condition" },
      el("span", { class: "badge " + (condition.result ? "status-completed" : "status-skipped") },
        condition.result ? "true" : "false"),
      el("strong", {}, ` ${condition.step}`), ` — ${condition.description}`,
      condition.context_summary ? el("div", { class: "mono muted" }, condition.context_summary) : "",
      el("div", { class: "muted" }, `${condition.function} · ${formatTime(condition.evaluated_at)}`)));
  }
  if (!status.conditions.length) conditions.append(el("p", { class: "muted" }, "No condition evaluated."));
  document.getElementById("request").textContent = json(status.request);
  document.getElementById("response").textContent = json(status.response);
}

function renderAudit() {
  const list = clear(document.getElementById("audit"));
  for (const entry of [...audit.values()].sort((a, b) => a.version - b.version)) {
    list.append(el("li", { "data-version": entry.version, "data-event": entry.event_type },
      el("span", { class: "version" }, entry.version),
      el("time", {}, formatTime(entry.occurred_at)),
      el("span", { class: "event-type" }, entry.event_type),
      el("span", { class: "summary" }, entry.summary)));
  }
}

function renderTimeline() {
  if (!timeline) return;
  drawTimeline(document.getElementById("timeline"), timeline, Date.now());
  const order = timeline.compensation_order;
  document.getElementById("compensation-order").textContent = order.length
    ? "Compensated in reverse: " + order.join(" → ") : "";
}

async function refresh() {
  if (!isSignedIn()) return;
  try {
    [status, timeline] = await Promise.all([api(base), api(`/ui/api${base}/timeline`)]);
  } catch (failure) {
    showError(failure.message);
    return;
  }
  showError("");
  for (const id of ["task-card", "timeline-card", "details"]) document.getElementById(id).hidden = false;
  renderFacts();
  renderActions();
  renderSteps();
  renderTimeline();
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 150);
}

function lastVersion() {
  return audit.size ? Math.max(...audit.keys()) : 0;
}

function onEvent(message) {
  audit.set(message.version, { version: message.version, event_type: message.event_type,
    step: message.step, summary: message.summary, occurred_at: message.occurred_at });
  renderAudit();
  scheduleRefresh();
}

function onProgress(message) {
  const row = document.querySelector(`#step-rows tr[data-step="${CSS.escape(message.step)}"] td:last-child`);
  if (!row || typeof message.progress !== "number") return;
  clear(row).append(el("span", { class: "progress" },
    el("progress", { max: 1, value: message.progress }), ` ${Math.round(message.progress * 100)}%`,
    message.message ? ` · ${message.message}` : ""));
}

// A ticket (an authenticated call), then an EventSource from the last version seen. The
// browser's own reconnections resend Last-Event-ID; when the stream is closed for good (the
// ticket expired, the server dropped it) a new ticket opens a new one.
async function follow() {
  if (source || !isSignedIn()) return;
  streamEnded = false;
  let ticket;
  try {
    ticket = await api(`${base}/stream-ticket`, { method: "POST" });
  } catch (failure) {
    setLive(failure instanceof ApiError && failure.status === 404 ? "offline" : "reconnecting");
    if (!(failure instanceof ApiError && failure.status === 404)) setTimeout(follow, 3000);
    return;
  }
  const stream = new EventSource(`${ticket.events_url}&after_version=${lastVersion()}`);
  source = stream;
  stream.addEventListener("open", () => setLive("live"));
  stream.addEventListener("event", (event) => onEvent(JSON.parse(event.data)));
  stream.addEventListener("progress", (event) => onProgress(JSON.parse(event.data)));
  stream.addEventListener("end", () => finish("ended"));
  stream.addEventListener("dropped", () => reopen(500));
  stream.addEventListener("error", () => {
    if (stream.readyState === EventSource.CLOSED) {
      // 204 (already ended), 401 (ticket expired) or another refusal.
      if (Date.now() < retryUntil) reopen(1000);
      else if (status && TERMINAL.has(status.status)) finish("ended");
      else reopen(2000);
    } else {
      setLive("reconnecting");
    }
  });
}

function closeStream() {
  if (source) source.close();
  source = null;
}

function finish(state) {
  streamEnded = true;
  closeStream();
  setLive(state);
  scheduleRefresh();
}

function reopen(delayMs) {
  closeStream();
  setLive("reconnecting");
  setTimeout(follow, delayMs);
}

async function act(path, options = {}, done = () => {}) {
  const result = document.getElementById("action-result");
  result.className = "notice";
  try {
    const answer = await api(path, { method: "POST", ...options });
    result.textContent = answer && answer.status ? `${answer.status}.` : "Sent.";
    done();
    if (streamEnded) { // an operator's retry goes on after a terminal event
      retryUntil = Date.now() + 10000;
      follow();
    }
  } catch (failure) {
    result.className = "notice error";
    result.textContent = String(failure.message);
  }
  scheduleRefresh();
}

function setUpActions() {
  const confirm = document.getElementById("cancel-confirm");
  document.getElementById("cancel-button").addEventListener("click", () => {
    confirm.hidden = false;
    document.getElementById("cancel-button").hidden = true;
  });
  document.getElementById("cancel-abort").addEventListener("click", () => {
    confirm.hidden = true;
    renderActions();
  });
  document.getElementById("cancel-confirm-button").addEventListener("click", () => {
    const reason = document.getElementById("cancel-reason").value.trim();
    confirm.hidden = true;
    act(`${base}/cancel` + (reason ? "?reason=" + encodeURIComponent(reason) : ""));
  });
  document.getElementById("retry-compensation-button").addEventListener("click",
    () => act(`${base}/retry-compensation`));
  document.getElementById("retry-forward-button").addEventListener("click",
    () => act(`${base}/retry-forward`));
}

startSession(async () => {
  setUpActions();
  try {
    const first = await api(`${base}/audit`);
    for (const entry of first.entries) audit.set(entry.version, entry);
  } catch (failure) {
    showError(failure.message);
    setLive("offline");
    return; // 404: missing, or another tenant's: nothing to show
  }
  renderAudit();
  await refresh();
  follow();
  // Open bars grow with the clock between events.
  setInterval(() => {
    if (timeline && timeline.end_ms === null && !document.hidden) renderTimeline();
  }, 250);
  addEventListener("resize", renderTimeline);
});
