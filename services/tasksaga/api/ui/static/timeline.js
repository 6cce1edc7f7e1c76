// Draws a task's timeline (GET /ui/api/tasks/{id}/timeline) as SVG: a lane per step, a bar
// per attempt, wait and compensation, parallel groups banded together, marks for retries,
// conditions, skips and signals. Open bars reach the current time. Text goes in text nodes.

const SVG = "http://www.w3.org/2000/svg";
const LABEL_WIDTH = 200;
const LANE_HEIGHT = 28;
const GROUP_HEIGHT = 20;
const AXIS_HEIGHT = 24;
const BAR_HEIGHT = 16;
const TICKS_S = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
  7200, 21600, 43200, 86400];

function node(tag, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== null) element.textContent = text;
  return element;
}

function titled(element, text) {
  element.append(node("title", {}, text));
  return element;
}

export function seconds(ms) {
  const s = ms / 1000;
  if (s < 10) return s.toFixed(1) + " s";
  if (s < 120) return Math.round(s) + " s";
  if (s < 7200) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return (s / 3600).toFixed(1) + " h";
}

function tickStep(spanS) {
  return TICKS_S.find((step) => spanS / step <= 8) || TICKS_S[TICKS_S.length - 1];
}

function rowsOf(lanes) {
  // A parallel group gets a header row above its lanes.
  const rows = [];
  let group = null;
  for (const lane of lanes) {
    const key = lane.parallel ? `${lane.order}:${lane.group || ""}` : null;
    if (key !== null && key !== group) {
      rows.push({ header: lane.group ? `parallel group ${lane.group}` : `parallel steps (order ${lane.order})`,
        key });
    }
    group = key;
    rows.push({ lane, key });
  }
  return rows;
}

export function drawTimeline(container, timeline, nowMs) {
  container.replaceChildren();
  if (timeline.start_ms === null) {
    container.append(Object.assign(document.createElement("p"),
      { className: "muted", textContent: "No event yet: the task is about to start." }));
    return;
  }
  const start = timeline.start_ms;
  let end = timeline.end_ms ?? nowMs;
  for (const lane of timeline.lanes) {
    for (const bar of lane.bars) end = Math.max(end, bar.end_ms ?? nowMs);
  }
  const span = Math.max(end - start, 1000);
  const width = Math.max(container.clientWidth, 640);
  const chart = width - LABEL_WIDTH - 16;
  const x = (ms) => LABEL_WIDTH + ((ms - start) / span) * chart;
  const rows = rowsOf(timeline.lanes);
  const height = AXIS_HEIGHT + rows.reduce((sum, row) =>
    sum + (row.header ? GROUP_HEIGHT : LANE_HEIGHT), 0) + 8;
  const svg = node("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "task timeline", class: "timeline-svg" });

  const step = tickStep(span / 1000);
  for (let t = 0; t <= span / 1000 + 1e-9; t += step) {
    const at = x(start + t * 1000);
    svg.append(node("line", { x1: at, x2: at, y1: AXIS_HEIGHT - 4, y2: height, class: "grid" }));
    svg.append(node("text", { x: at, y: 14, class: "tick", "text-anchor": "middle" },
      seconds(t * 1000).replace(".0 s", " s")));
  }

  let y = AXIS_HEIGHT;
  let bandTop = null;
  const bands = [];
  rows.forEach((row, index) => {
    if (row.header) {
      bandTop = y;
      svg.append(node("text", { x: 8, y: y + 14, class: "group-label" }, row.header));
      y += GROUP_HEIGHT;
    } else {
      const lane = row.lane;
      const mid = y + LANE_HEIGHT / 2;
      const g = node("g", { class: "lane", "data-step": lane.step });
      g.append(node("text", { x: lane.parallel ? 20 : 8, y: mid + 4, class: "lane-label" },
        lane.step));
      g.append(node("line", { x1: LABEL_WIDTH, x2: width - 16, y1: mid, y2: mid, class: "track" }));
      for (const bar of lane.bars) {
        const stop = bar.end_ms ?? nowMs;
        const left = x(bar.start_ms);
        const barWidth = Math.max(x(stop) - left, 3);
        const rect = titled(node("rect", {
          x: left, y: mid - BAR_HEIGHT / 2, width: barWidth, height: BAR_HEIGHT, rx: 3,
          class: `bar ${bar.kind} ${bar.outcome}`, "data-kind": bar.kind,
          "data-outcome": bar.outcome, "data-attempt": bar.attempt,
        }), `${lane.step} · ${bar.kind === "compensation" ? "compensation" : bar.kind === "wait"
          ? "wait" : "attempt"} ${bar.attempt}: ${bar.outcome}, ${seconds(stop - bar.start_ms)}`);
        g.append(rect);
        if (barWidth > 26) {
          g.append(node("text", { x: left + 5, y: mid + 4, class: "bar-label" },
            (bar.kind === "compensation" ? "↺" : "#") + bar.attempt));
        }
      }
      for (const mark of lane.marks) {
        const at = x(mark.at_ms);
        g.append(titled(node("path", {
          d: `M ${at} ${mid - 7} L ${at + 5} ${mid} L ${at} ${mid + 7} L ${at - 5} ${mid} Z`,
          class: `mark ${mark.kind}`, "data-mark": mark.kind,
        }), mark.label || mark.kind));
      }
      svg.append(g);
      y += LANE_HEIGHT;
    }
    const next = rows[index + 1];
    if (bandTop !== null && (!next || next.key !== row.key || next.header)) {
      bands.push([bandTop, y]);
      bandTop = null;
    }
  });
  for (const [top, bottom] of bands) {
    svg.prepend(node("rect", { x: 2, y: top, width: width - 4, height: bottom - top, rx: 6,
      class: "group-band" }));
  }
  if (timeline.end_ms === null) {
    const at = x(nowMs);
    svg.append(node("line", { x1: at, x2: at, y1: AXIS_HEIGHT - 4, y2: height, class: "now" }));
  }
  container.append(svg);
}
