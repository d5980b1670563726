// Run state for the run view: a mutable copy of the runner's snapshot that events are folded into.
//
// Mirrors nbpipe/events.py (the only wire format) and the snapshot of GET /api/v1/runs/{id}.
// Non-goals: talking to the runner, touching the DOM. Every function here is pure or mutates only
// the run object it is given, so the view can diff what changed and repaint just that.

export const RUN_ACTIVE = new Set(["queued", "running"]);
export const STEP_ACTIVE = new Set(["running", "retrying"]);
export const STEP_ORDER = ["running", "retrying", "pending", "succeeded", "cached", "failed", "cancelled", "skipped"];
export const STATE_ICONS = {
  pending: "○", running: "", retrying: "↻", succeeded: "✓", cached: "⚡",
  failed: "✗", cancelled: "⊘", skipped: "↷", queued: "○",
};

const LOG_LIMIT = 2_000_000; // characters kept per step; older output is trimmed from the front

function freshStep(spec) {
  return {
    name: String(spec.name), component: spec.component || spec.name, display_name: spec.display_name || "",
    upstream: Array.isArray(spec.upstream) ? spec.upstream.map(String) : [], group: spec.group || "",
    state: "pending", attempt: 0, max_attempts: 1, started_at: null, finished_at: null, duration: null,
    reason: "", traceback: "", cached: false, inputs: {}, outputs: {},
  };
}

/** Copy a snapshot into the view's own run object (the caller's object is never mutated). */
export function runFromSnapshot(snapshot) {
  const s = snapshot || {};
  const run = {
    id: s.id || "", name: s.name || "", pipeline: s.pipeline || "", experiment: s.experiment || "",
    state: s.state || "queued", params: { ...(s.params || {}) }, float_params: new Set(s.float_params || []), created_at: s.created_at ?? null,
    started_at: s.started_at ?? null, finished_at: s.finished_at ?? null, duration: s.duration ?? null,
    reason: s.reason || "", last_event_id: Number(s.last_event_id) || 0, steps: [], byName: new Map(),
    groups: Array.isArray(s.groups) ? s.groups.map((g) => ({ ...g })) : [], // optional control-flow metadata
  };
  for (const spec of s.steps || []) {
    const step = Object.assign(freshStep(spec), spec);
    step.upstream = freshStep(spec).upstream;
    step.inputs = { ...(spec.inputs || {}) };
    step.outputs = { ...(spec.outputs || {}) };
    run.steps.push(step);
    run.byName.set(step.name, step);
  }
  return run;
}

/** A string that changes exactly when the graph's shape (names + edges) changes. */
export function graphKey(run) {
  return run.steps.map((s) => `${s.name}@${s.group}<${s.upstream.join(",")}`).join("|");
}

/**
 * Fold one event into ``run``. Returns what changed so the view repaints only that:
 * ``{run, graph, steps: [names], log: {step, attempt, stream, text} | null}`` or null if ignored.
 */
export function applyRunEvent(run, ev) {
  if (!ev || typeof ev !== "object") return null;
  const id = Number(ev.id) || 0;
  if (id && id <= run.last_event_id) return null;
  const change = { run: false, graph: false, steps: [], log: null };
  const step = ev.step != null ? run.byName.get(String(ev.step)) : null;
  switch (ev.type) {
    case "RunCreated": {
      Object.assign(run, {
        name: ev.name || run.name, pipeline: ev.pipeline || run.pipeline, experiment: ev.experiment || run.experiment,
        params: { ...(ev.params || {}) }, state: "queued", created_at: ev.ts ?? run.created_at,
      });
      run.steps = ((ev.graph && ev.graph.steps) || []).map(freshStep);
      run.groups = Array.isArray(ev.graph && ev.graph.groups) ? ev.graph.groups.map((g) => ({ ...g })) : [];
      run.byName = new Map(run.steps.map((s) => [s.name, s]));
      change.run = change.graph = true;
      break;
    }
    case "StepsAdded": {
      // a ParallelFor expanded at run time: its iteration steps join the graph (group = loop id)
      for (const spec of ev.steps || []) {
        if (run.byName.has(String(spec.name))) continue;
        const added = freshStep(spec);
        run.steps.push(added);
        run.byName.set(added.name, added);
      }
      change.graph = true;
      break;
    }
    case "RunStarted":
      run.state = "running";
      run.started_at = ev.ts ?? run.started_at;
      change.run = true;
      break;
    case "RunFinished":
      Object.assign(run, { state: ev.state || "succeeded", reason: ev.reason || "", finished_at: ev.ts ?? null });
      run.duration = ev.duration ?? run.duration;
      change.run = true;
      break;
    case "StepStarted":
      if (!step) return null;
      Object.assign(step, {
        state: "running", attempt: ev.attempt || 1, max_attempts: ev.max_attempts || step.max_attempts || 1,
        started_at: ev.ts ?? null, finished_at: null, duration: null, reason: "", traceback: "", cached: false,
      });
      break;
    case "StepRetrying":
      if (!step) return null;
      Object.assign(step, {
        state: "retrying", attempt: ev.attempt || step.attempt, reason: ev.reason || "",
        max_attempts: ev.max_attempts || step.max_attempts,
      });
      break;
    case "StepLog":
      if (!step) return null;
      change.log = { step: step.name, attempt: ev.attempt || step.attempt || 1, stream: ev.stream || "stdout", text: String(ev.text ?? "") };
      break;
    case "ArtifactSaved":
      if (!step || ev.name == null) return null;
      step.outputs = { ...step.outputs, [ev.name]: {
        digest: ev.digest || "", kind: ev.kind || "value", format: ev.format || "", size: ev.size ?? null, preview: ev.preview ?? null,
      } };
      break;
    case "StepWorkers": // a distributed step's workers (workers=N): [{rank, pid, state, exit_code}]
      if (!step) return null;
      step.workers = Array.isArray(ev.workers) ? ev.workers : [];
      break;
    case "StepWaiting": // waits for an identical step running now (same cache key): same state, says so
      if (!step) return null;
      step.reason = ev.reason || "";
      break;
    case "StepFinished":
      if (!step) return null;
      Object.assign(step, {
        state: ev.state || "succeeded", attempt: ev.attempt || step.attempt, duration: ev.duration ?? step.duration,
        reason: ev.reason || "", traceback: ev.traceback || "", finished_at: ev.ts ?? null, cached: ev.state === "cached",
      });
      break;
    default: // an event type this view does not know (a newer runner's): skipped
      return null;
  }
  if (step) change.steps.push(step.name);
  if (id) run.last_event_id = id;
  return change;
}

/**
 * Per-step log buffer: chunks of {attempt, stream, text}, trimmed from the front past LOG_LIMIT.
 *
 * A step attempt's log file is the concatenation of its StepLog texts. If the view saw the attempt
 * start (``started``), the events are the whole log. Otherwise (the view opened mid-run) the text
 * written so far is fetched once: ``beginFetch``, then ``merge`` with the fetched text. Events that
 * came before the fetch are in the file already; events that arrive during it, or for a moment
 * after it (the runner tails the file every 0.1 s), may or may not be: only their part past the
 * fetched text is kept (``echoStart`` finds where they continue it).
 */
export class LogBook {
  constructor(now = Date.now) { this.byStep = new Map(); this.now = now; }
  get(step) { return this.byStep.get(step) || null; }
  entry(step) {
    let entry = this.byStep.get(step);
    if (!entry) {
      entry = { chunks: [], size: 0, trimmed: false, full: false, live: new Set(), fetched: new Set(), pending: null };
      this.byStep.set(step, entry);
    }
    return entry;
  }
  /** The whole log, from the caller (the widget's ``logs`` trait): nothing to fetch after this. */
  set(step, text) {
    this.byStep.delete(step);
    const entry = this.entry(step);
    entry.full = true;
    return this.push(entry, 0, "stdout", String(text ?? ""));
  }
  append(step, attempt, stream, text) {
    const entry = this.entry(step);
    if (entry.pending && entry.pending.attempt === attempt) entry.pending.chunks.push({ stream, text });
    else if (entry.echo) text = this.unechoed(entry, attempt, text);
    return text ? this.push(entry, attempt, stream, text) : entry;
  }
  /**
   * The part of an event's ``text`` not in the log fetched just before: the runner tails a step's
   * log file every 0.1 s, so a fetched log may hold lines whose StepLog events come after it (the
   * first line of a step opened as it started showed twice). Events carry no file offset, so an
   * echo is recognised by its text, for ECHO_MS after the fetch, continuing where the last one ended.
   */
  unechoed(entry, attempt, text) {
    const echo = entry.echo;
    if (echo.attempt !== attempt) return text;
    if (this.now() > echo.until || !echo.text) { entry.echo = null; return text; }
    if (echo.at < 0) echo.at = echoStart(echo.text, text); // where the events are in the fetched tail
    if (echo.at < 0) { entry.echo = null; return text; }
    const rest = echo.text.slice(echo.at);
    const k = Math.min(rest.length, text.length);
    if (rest.slice(0, k) !== text.slice(0, k)) { entry.echo = null; return text; }
    echo.at += k;
    if (echo.at >= echo.text.length) entry.echo = null;
    return text.slice(k);
  }
  push(entry, attempt, stream, text) {
    const last = entry.chunks[entry.chunks.length - 1];
    if (last && last.attempt === attempt && last.stream === stream) last.text += text;
    else entry.chunks.push({ attempt, stream, text });
    entry.size += text.length;
    while (entry.size > LOG_LIMIT && entry.chunks.length > 1) {
      entry.size -= entry.chunks.shift().text.length;
      entry.trimmed = true;
    }
    return entry;
  }
  /** The view saw ``attempt`` start, so its events carry all of its log (any text of it held is stale). */
  started(step, attempt) {
    const entry = this.entry(step);
    entry.live.add(attempt);
    if (!entry.chunks.some((c) => c.attempt === attempt)) return;
    const old = entry.chunks;
    Object.assign(entry, { chunks: [], size: 0 });
    for (const c of old) if (c.attempt !== attempt) this.push(entry, c.attempt, c.stream, c.text);
  }
  /** True if the log of ``attempt`` so far is not here and was not asked for yet. */
  needsFetch(step, attempt) {
    const e = this.byStep.get(step);
    return !e || (!e.full && !e.pending && !e.live.has(attempt) && !e.fetched.has(attempt));
  }
  /** Start collecting ``attempt``'s events to merge with the fetched text; returns a token for merge. */
  beginFetch(step, attempt) {
    const entry = this.entry(step);
    entry.pending = { attempt, chunks: [] };
    return entry;
  }
  /** Put the fetched ``text`` in place of the attempt's chunks; false if ``setLogs`` replaced the entry meanwhile. */
  merge(step, attempt, text, token) {
    const entry = this.byStep.get(step);
    if (!entry || entry !== token) return false;
    const pending = entry.pending && entry.pending.attempt === attempt ? entry.pending.chunks : [];
    entry.pending = null;
    entry.fetched.add(attempt);
    if (text == null) return true; // the fetch failed: keep what the events brought
    text = String(text);
    // The events that came during the fetch continue the file from a line of the fetched text
    // (often its end, but the runner's tail may not have reached it): the part of them in it is skipped.
    const events = pending.map((c) => c.text).join("");
    const tail = text.slice(-ECHO_CHARS);
    const at = events ? echoStart(tail, events) : -1;
    let skip = at < 0 ? 0 : Math.min(events.length, tail.length - at);
    const old = entry.chunks;
    Object.assign(entry, { chunks: [], size: 0 });
    for (const c of old) if (c.attempt && c.attempt < attempt) this.push(entry, c.attempt, c.stream, c.text);
    this.push(entry, attempt, "stdout", text);
    for (const c of pending) {
      if (skip < c.text.length) this.push(entry, attempt, c.stream, c.text.slice(skip));
      skip = Math.max(0, skip - c.text.length);
    }
    for (const c of old) if (c.attempt > attempt) this.push(entry, c.attempt, c.stream, c.text);
    // What the events so far did not reach of the fetched text may still come as events.
    entry.echo = events && at < 0 ? null // the events are not in the fetched text: later ones are not either
      : { attempt, text: tail, at: at < 0 ? -1 : Math.min(tail.length, at + events.length), until: this.now() + ECHO_MS };
    return true;
  }
}

const ECHO_MS = 3000;
const ECHO_CHARS = 65536;

/** The latest line start in ``text`` from which ``events`` continue it (agree on their common part); -1 if none. */
export function echoStart(text, events) {
  for (let x = text.lastIndexOf("\n", text.length - 2) + 1; ; x = text.lastIndexOf("\n", x - 2) + 1) {
    const k = Math.min(text.length - x, events.length);
    if (k > 0 && text.slice(x, x + k) === events.slice(0, k)) return x;
    if (x === 0) return -1;
  }
}

/**
 * Where a cached step's outputs came from: {run, step}, from the Lab server's ``reused_from`` or the
 * reason the runner gives ("reused from run R (step S) by the cache", "reused from run R (upstream
 * of 'x', unchanged)"); null if neither names a run.
 */
export function cacheOrigin(step) {
  if (!step || step.state !== "cached") return null;
  const from = step.reused_from;
  if (from && from.run) return { run: String(from.run), step: String(from.step || step.name) };
  const m = /^reused from run (\S+?)(?: \(step ([^)]+)\))?(?=[ ,.;:]|$)/.exec(String(step.reason || ""));
  return m ? { run: m[1], step: m[2] || step.name } : null;
}

/**
 * "850 ms", "4.2 s", "12 s", "3 min 05 s", "2 h 04 min": the same words as the Lab lists
 * (labextension/src/format.ts), so one run reads the same in its header and in the Runs list.
 */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 0.9995) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 9.95) return `${seconds.toFixed(1)} s`;
  if (seconds < 59.5) return `${Math.round(seconds)} s`;
  const t = Math.round(seconds), m = Math.floor(t / 60);
  if (m < 60) return `${m} min ${String(t % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

/** Seconds a step (or the run) has been going: final duration, else live from started_at. */
export function elapsedOf(item, now) {
  // A step that never started (cancelled or skipped before it ran) took no time: no "0 ms".
  if (item.started_at == null && "attempt" in item && !item.attempt && ["cancelled", "skipped"].includes(item.state)) return null;
  if (item.duration != null) return item.duration;
  if (item.started_at == null) return null;
  const end = item.finished_at ?? now;
  return Math.max(0, end - item.started_at);
}

export function formatBytes(n) {
  if (n == null || !Number.isFinite(Number(n))) return "";
  n = Number(n);
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
}

/** Short text for a parameter or literal value (JSON for objects, capped). */
export function formatValue(value, limit = 80, isFloat = false) {
  let text;
  if (typeof value === "string") text = JSON.stringify(value);
  // a float parameter (the snapshot's float_params) shows as one: JSON made 1.0 the number 1
  else if (typeof value === "number") text = Number.isInteger(value) ? (isFloat && Math.abs(value) < 1e16 ? value.toFixed(1) : String(value)) : String(Number(value.toPrecision(6)));
  else { try { text = JSON.stringify(value); } catch { text = String(value); } }
  if (text === undefined) text = String(value);
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}
