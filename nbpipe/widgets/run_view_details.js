// The details pane of the selected step: Logs (live tail), Inputs, Outputs (previews), Error.
//
// Only the active tab is built; events for the selected step append log text in place or rebuild
// just the tab they touch. Non-goals: fetching anything itself (loadLogs / loadImage are the
// caller's), the graph.

import { STATE_ICONS, STEP_ACTIVE, cacheOrigin, elapsedOf, formatBytes, formatDuration, formatValue } from "./run_view_state.js";
import { h, renderPreview } from "./run_view_preview.js";
import { stepLabel } from "./run_view_graph.js";

// Their reason is no error. A pending step's reason says which identical step it waits for (StepWaiting).
const NEUTRAL = new Set(["succeeded", "cached", "cancelled", "skipped", "pending"]);
const TABS = [["logs", "Logs"], ["inputs", "Inputs"], ["outputs", "Outputs"], ["error", "Error"]];

export class DetailsPane {
  constructor(host, ctx) {
    this.ctx = ctx; // {selectStep, close, loadLogs, loadImage, images, onAction, logs: LogBook}
    this.step = null;
    this.tab = "logs";
    this.key = "";
    this.el = h("section", { class: "rv-details", "aria-label": "Step details", hidden: true });
    host.append(this.el);
  }

  /** Show ``step`` (or hide with null); picks Error first for failed steps. */
  show(step) {
    const changed = !this.step || !step || this.step.name !== step.name;
    this.step = step;
    this.el.hidden = !step;
    if (!step) { this.el.replaceChildren(); return; }
    if (changed) {
      this.tab = step.state === "failed" || step.traceback ? "error" : "logs";
      this.build();
    } else {
      this.refresh();
    }
  }

  build() {
    const step = this.step;
    this.icon = h("span", { class: "rv-icon", "aria-hidden": "true" });
    this.stateText = h("span", { class: "rv-pill-text" });
    this.pill = h("span", { class: "rv-pill" }, this.icon, this.stateText);
    this.metaLine = h("div", { class: "rv-details-meta" });
    const close = h("button", { class: "rv-tool rv-close", type: "button", title: "Close details", "aria-label": "Close details", text: "×", onclick: () => this.ctx.close() });
    const actions = h("div", { class: "rv-details-actions" });
    if (this.ctx.onAction) {
      actions.append(h("button", { class: "rv-button", type: "button", text: "Rerun from here", title: `Rerun this run starting at ${step.name}`,
        onclick: () => this.ctx.onAction("rerun_from", { step: step.name }) }));
    }
    actions.append(close);
    this.tabBar = h("div", { class: "rv-tabs", role: "tablist", "aria-label": "Step detail tabs" });
    this.tabButtons = new Map();
    for (const [id, label] of TABS) {
      const b = h("button", { class: "rv-tab", type: "button", role: "tab", "data-tab": id, text: label, onclick: () => this.setTab(id) });
      b.addEventListener("keydown", (ev) => this.onTabKey(ev, id));
      this.tabButtons.set(id, b);
      this.tabBar.append(b);
    }
    this.body = h("div", { class: "rv-tab-body", role: "tabpanel" });
    this.el.replaceChildren(
      h("header", { class: "rv-details-head" },
        h("div", { class: "rv-details-title" }, h("h3", { text: stepLabel(step), title: step.name }), this.pill),
        actions),
      this.metaLine, this.tabBar, this.body);
    this.key = "";
    this.refresh({ force: true });
  }

  visibleTabs() {
    const s = this.step;
    const n = Object.keys(s.outputs || {}).length;
    // A succeeded or cached step's reason (reused from run …, re-executed: …), and why a step was
    // cancelled or skipped, are in the meta line: neutral states, not errors.
    const ok = NEUTRAL.has(s.state);
    return TABS.filter(([id]) => id !== "error" || s.state === "failed" || s.traceback || (s.reason && !ok))
      .map(([id, label]) => [id, id === "outputs" && n ? `${label} ${n}` : label]);
  }

  /** What the active tab body shows; the body is rebuilt only when this changes. */
  bodyKey() {
    const s = this.step;
    if (this.tab === "inputs") {
      // The values come from upstream outputs: rebuild when one of them appears or changes.
      const ups = Object.values(s.inputs || {}).map((b) => { const o = this.upstreamOutput(b); return o ? `${o.digest}:${o.preview ? o.preview.type : ""}` : ""; });
      return JSON.stringify([s.inputs || {}, ups]);
    }
    if (this.tab === "outputs") {
      return Object.entries(s.outputs || {}).map(([k, o]) => `${k}:${o && o.digest}:${o && o.preview ? o.preview.type : ""}`).join("|") + `|${s.state}`;
    }
    if (this.tab === "error") return `${s.state}|${s.attempt}|${s.reason}|${s.traceback}`;
    const origin = cacheOrigin(s);
    return origin ? `logs|${origin.run}/${origin.step}` : "logs";
  }

  /** Update header and tabs after the selected step changed; rebuild the tab body only if needed. */
  refresh({ force = false, now = Date.now() / 1000 } = {}) {
    const s = this.step;
    if (!s) return;
    this.pill.className = `rv-pill rv-state-${s.state}`;
    this.icon.textContent = STATE_ICONS[s.state] ?? "";
    this.stateText.textContent = s.state;
    const bits = [s.component !== s.name ? `${s.name} · component ${s.component}` : `component ${s.component}`];
    if (s.attempt) bits.push(`attempt ${s.attempt}${s.max_attempts > 1 ? ` of ${s.max_attempts}` : ""}`);
    const d = formatDuration(elapsedOf(s, now));
    if (d) bits.push(d);
    if (s.group) bits.push(`group ${s.group}`);
    if (s.reason && NEUTRAL.has(s.state)) bits.push(s.reason);
    const meta = bits.join(" · ");
    if (this.metaLine.textContent !== meta) this.metaLine.textContent = meta;
    const tabs = this.visibleTabs();
    if (!tabs.some(([id]) => id === this.tab)) this.tab = "logs";
    for (const [id, b] of this.tabButtons) {
      const t = tabs.find(([tid]) => tid === id);
      b.hidden = !t;
      if (t && b.textContent !== t[1]) b.textContent = t[1];
      b.setAttribute("aria-selected", String(id === this.tab));
      b.tabIndex = id === this.tab ? 0 : -1;
    }
    const key = `${this.tab}#${this.bodyKey()}`;
    if (force || key !== this.key) { this.key = key; this.renderTab(); }
  }

  setTab(id) {
    this.tab = id;
    this.refresh({ force: true });
  }

  onTabKey(ev, id) {
    if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
    const ids = this.visibleTabs().map(([t]) => t);
    const next = ids[(ids.indexOf(id) + (ev.key === "ArrowRight" ? 1 : ids.length - 1)) % ids.length];
    this.setTab(next);
    this.tabButtons.get(next).focus();
  }

  renderTab() {
    const s = this.step;
    this.body.dataset.tab = this.tab;
    if (this.tab === "logs") this.renderLogs(s);
    else if (this.tab === "inputs") this.body.replaceChildren(this.renderInputs(s));
    else if (this.tab === "outputs") this.body.replaceChildren(this.renderOutputs(s));
    else this.body.replaceChildren(this.renderError(s));
  }

  renderLogs(s) {
    this.logPre = h("pre", { class: "rv-log", tabindex: "0", "aria-label": `Log of ${s.name}`, "aria-live": "off" });
    this.logAttempt = null;
    const bar = h("div", { class: "rv-log-bar" });
    if (this.ctx.loadLogs && s.attempt > 0) {
      const label = h("span", { class: "rv-caption", text: "Full log:" });
      bar.append(label);
      for (let a = 1; a <= s.attempt; a += 1) {
        bar.append(h("button", { class: "rv-chip rv-chip-button", type: "button", text: `attempt ${a}`, onclick: () => this.fetchLogs(s, a) }));
      }
    }
    const origin = cacheOrigin(s);
    this.body.replaceChildren(...(origin ? [this.originNote(s, origin)] : []), bar, this.logPre);
    const logs = this.ctx.logs;
    if (origin) this.fetchOriginLog(s, origin);
    // The log so far is fetched once per attempt unless the events carry all of it (the view saw
    // the attempt start); StepLog events that arrive meanwhile are merged without duplicates.
    if (this.ctx.loadLogs && s.attempt > 0 && logs.needsFetch(s.name, s.attempt)) this.fetchSoFar(s, s.attempt);
    const entry = logs.get(s.name);
    if (entry && entry.pending) this.logPre.append(h("span", { class: "rv-log-note rv-log-loading", text: "Loading earlier output…\n" }));
    if (entry) {
      if (entry.trimmed) this.logPre.append(h("span", { class: "rv-log-note", text: "… earlier output trimmed …\n" }));
      for (const c of entry.chunks) this.appendChunk(c);
    }
    if (!this.logPre.childNodes.length) {
      const none = origin ? (this.originLoading ? "Loading the log of that run…" : `No output in run ${origin.run} either.`) : "No output.";
      this.logPre.append(h("span", { class: `rv-log-note${this.originLoading ? " rv-log-loading" : ""}`, text: s.state === "pending" ? "Waiting for the step to start…" : STEP_ACTIVE.has(s.state) ? "No output yet." : none }));
    }
    this.logPre.scrollTop = this.logPre.scrollHeight;
  }

  /** A cached step did not run here: say so, and from which run (a link to it) its outputs and log come. */
  originNote(s, origin) {
    const open = this.ctx.onAction;
    const run = open ? h("button", { class: "rv-link", type: "button", "data-run": origin.run, text: origin.run, title: `Show run ${origin.run}`,
      onclick: () => open("open", { run: origin.run }) }) : h("code", { text: origin.run });
    return h("div", { class: "rv-log-origin", role: "note" },
      h("span", { class: "rv-icon", "aria-hidden": "true", text: STATE_ICONS.cached }),
      "Cached: this step did not run in this run. Its outputs and the log below come from run ", run,
      origin.step !== s.name ? ` (step ${origin.step})` : "", ".");
  }

  /** The log of the run a cached step's outputs came from, once per step shown (Lab; the widget's kernel sends it). */
  fetchOriginLog(s, origin) {
    const key = `${origin.run}/${origin.step}`;
    if (!this.ctx.loadLogs) return;
    const entry = this.ctx.logs.entry(s.name); // dropped with the other logs when the view shows another run
    if (entry.origin === key || entry.chunks.length) return;
    entry.origin = key;
    this.originLoading = true;
    const name = s.name;
    const shown = () => this.step && this.step.name === name && this.tab === "logs";
    Promise.resolve().then(() => this.ctx.loadLogs(origin.step, null, origin.run)).then(
      (text) => { this.originLoading = false; if (text) this.ctx.logs.set(name, text); if (shown()) this.renderLogs(this.step); },
      (err) => {
        this.originLoading = false;
        if (shown()) { this.renderLogs(this.step); this.logPre.replaceChildren(h("span", { class: "rv-log-note", text: `Could not load the log of run ${origin.run}: ${err && err.message ? err.message : err}` })); }
      });
  }

  fetchSoFar(s, attempt) {
    const name = s.name, logs = this.ctx.logs, token = logs.beginFetch(name, attempt);
    const done = (text) => {
      if (logs.merge(name, attempt, text, token) && this.step && this.step.name === name) this.replaceLogs();
    };
    Promise.resolve().then(() => this.ctx.loadLogs(name, attempt)).then(done, (err) => {
      done(null);
      if (this.logPre && this.step && this.step.name === name) this.logPre.append(h("span", { class: "rv-log-note", text: `\nCould not load earlier output: ${err && err.message ? err.message : err}\n` }));
    });
  }

  /** An attempt's whole log (the attempt buttons), in place of what is shown. */
  fetchLogs(s, attempt) {
    const name = s.name;
    Promise.resolve().then(() => this.ctx.loadLogs(name, attempt)).then(
      (text) => { this.ctx.logs.set(name, text); if (this.step && this.step.name === name && this.tab === "logs") this.renderLogs(this.step); },
      (err) => { if (this.logPre) this.logPre.append(h("span", { class: "rv-log-note", text: `\nCould not load log: ${err && err.message ? err.message : err}\n` })); });
  }

  appendChunk(c) {
    const pre = this.logPre;
    if (pre.firstChild && pre.firstChild.classList && pre.firstChild.classList.contains("rv-log-note") && !pre.firstChild.classList.contains("rv-log-loading") && pre.childNodes.length === 1) pre.replaceChildren();
    if (c.attempt && this.logAttempt !== null && c.attempt !== this.logAttempt) {
      pre.append(h("span", { class: "rv-log-attempt", text: `── attempt ${c.attempt} ──\n` }));
    }
    if (c.attempt) this.logAttempt = c.attempt;
    const last = pre.lastChild;
    if (last && last.dataset && last.dataset.stream === c.stream && Number(last.dataset.attempt) === c.attempt) last.append(c.text);
    else pre.append(h("span", { class: `rv-log-${c.stream === "stderr" ? "stderr" : "stdout"}`, "data-stream": c.stream, "data-attempt": c.attempt, text: c.text }));
  }

  /** Live tail: append one log chunk of the selected step, following the bottom if the user was there. */
  appendLog(chunk) {
    if (!this.step || this.tab !== "logs" || !this.logPre) return;
    const pre = this.logPre;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    this.appendChunk(chunk);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  replaceLogs() {
    if (!this.step || this.tab !== "logs" || !this.logPre) return;
    const pre = this.logPre;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    const top = pre.scrollTop;
    this.renderLogs(this.step);
    this.logPre.scrollTop = atBottom ? this.logPre.scrollHeight : top;
  }

  /** The upstream output an input is bound to (with its preview), once that step produced it. */
  upstreamOutput(b) {
    if (!b || typeof b !== "object" || b.step == null || !this.ctx.stepOf) return null;
    const up = this.ctx.stepOf(b.step);
    const outs = (up && up.outputs) || {};
    const keys = Object.keys(outs);
    const key = b.output != null && b.output in outs ? b.output : keys.length === 1 && b.output == null ? keys[0] : null;
    return key == null ? null : outs[key] || null;
  }

  renderInputs(s) {
    const entries = Object.entries(s.inputs || {});
    if (!entries.length) return h("p", { class: "rv-empty", text: "This step takes no inputs." });
    const pctx = { loadImage: this.ctx.loadImage, images: this.ctx.images };
    const rows = entries.map(([name, b]) => {
      const bind = b && typeof b === "object" ? b : { value: b };
      let source;
      if (bind.step != null) {
        // The value the step got: the upstream output, previewed like the Outputs tab.
        const out = this.upstreamOutput(bind);
        const up = this.ctx.stepOf ? this.ctx.stepOf(bind.step) : null;
        const facts = out ? [out.kind, out.format, formatBytes(out.size)].filter(Boolean).join(" · ") : "";
        source = h("div", { class: "rv-input-value" },
          h("span", null, h("span", { class: "rv-kind", text: "from" }),
            h("button", { class: "rv-link", type: "button", text: `${bind.step}.${bind.output ?? ""}`, title: `Select step ${bind.step}`,
              onclick: () => this.ctx.selectStep(String(bind.step)) }),
            facts ? h("span", { class: "rv-caption", text: ` ${facts}` }) : null),
          out ? h("div", { class: "rv-output-body" }, renderPreview(out.preview, pctx, out))
            : h("p", { class: "rv-empty", text: up && ["failed", "cancelled", "skipped"].includes(up.state) ? `Not produced: ${bind.step} ${up.state}.` : `Not produced yet (${bind.step} ${up ? up.state : "pending"}).` }));
      } else if (bind.parameter != null) {
        // The run's value of the parameter (the binding names it; the run holds what it was).
        const given = "value" in bind ? bind : this.ctx.paramOf ? this.ctx.paramOf(bind.parameter) : null;
        source = h("span", null, h("span", { class: "rv-kind", text: "param" }),
          h("code", { text: `${bind.parameter} = ${given ? formatValue(given.value, 80, Boolean(this.ctx.isFloatParam && this.ctx.isFloatParam(bind.parameter))) : "?"}` }));
      } else {
        source = h("span", null, h("span", { class: "rv-kind", text: "value" }), h("code", { text: formatValue(bind.value) }));
      }
      return h("tr", null, h("th", { scope: "row", text: name }), h("td", null, source));
    });
    return h("table", { class: "rv-table rv-inputs" }, h("tbody", null, ...rows));
  }

  renderOutputs(s) {
    const entries = Object.entries(s.outputs || {});
    if (!entries.length) {
      const why = ["succeeded", "cached"].includes(s.state) ? "This step returned no outputs."
        : { failed: "No outputs: the step failed (its Error and Logs tabs say why).", cancelled: "No outputs: the step was cancelled.",
            skipped: "No outputs: the step was skipped." }[s.state] || "No outputs yet.";
      return h("p", { class: "rv-empty", text: why });
    }
    const ctx = { loadImage: this.ctx.loadImage, images: this.ctx.images };
    return h("div", { class: "rv-outputs" }, ...entries.map(([name, out]) => {
      const o = out || {};
      const facts = [o.kind, o.format, formatBytes(o.size)].filter(Boolean).join(" · ");
      return h("article", { class: "rv-output", "data-output": name },
        h("header", { class: "rv-output-head" },
          h("strong", { text: name }), h("span", { class: "rv-caption", text: facts }),
          o.digest ? h("code", { class: "rv-digest", text: String(o.digest).slice(0, 12), title: `sha256 ${o.digest}` }) : null,
          o.digest && this.ctx.onLineage ? h("button", { class: "rv-link rv-lineage", type: "button", text: "Lineage",
            title: `Where ${s.name}.${name} came from and which steps used it`, onclick: () => this.ctx.onLineage(s.name, name) }) : null,
          o.digest && this.ctx.onDownload ? h("button", { class: "rv-link rv-download", type: "button", text: "Download",
            title: `Save ${s.name}.${name} (${facts || "its stored bytes"}) as a file`, onclick: () => this.ctx.onDownload(s.name, name, o) }) : null),
        h("div", { class: "rv-output-body" }, renderPreview(o.preview, ctx, o)));
    }));
  }

  renderError(s) {
    const box = h("div", { class: "rv-error" });
    const head = s.state === "failed"
      ? `Step '${s.name}' failed${s.max_attempts > 1 ? ` (attempt ${s.attempt}/${s.max_attempts})` : ""}`
      : `Step '${s.name}' is ${s.state}`;
    box.append(h("div", { class: "rv-error-head", text: head }));
    if (s.reason) box.append(h("p", { class: "rv-error-reason", text: s.reason }));
    if (s.traceback) box.append(h("pre", { class: "rv-pre rv-traceback", text: s.traceback }));
    return box;
  }
}
