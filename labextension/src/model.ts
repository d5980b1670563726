/**
 * The panel's state, without the DOM: the active notebook's analysis and parameter form, the run
 * being watched (with its event subscription), the run list, the runner status and setting.
 * Views listen with `onChange` / `onSnapshot` / `onEvent` and call the action methods.
 *
 * Event stream: after a snapshot, events are streamed from its `last_event_id`; a dropped stream
 * is resumed from the last event seen (a few times, with backoff), and ends with `RunFinished`.
 * Nothing polls: the run list is refreshed when a run starts or finishes, or when asked.
 *
 * Non-goals: folding events into a run graph (the shared run view does), DOM, JupyterLab APIs.
 */

import type { KfpImage, NbpipeApi, NotebookAnalysis, RunnerSettings, RunnerStatus } from './api';
import { RUN_FINAL, RunEvent, RunSnapshot, RunSummary } from './events';
import { ErrorInfo, errorInfo, runNotebook } from './format';
import { collectParams, initialRaw, RawValue } from './params';
import { Emitter } from './runsmodel';

export interface PanelState {
  /** Path of the notebook the panel works on (relative to the Jupyter root). */
  notebook: string | null;
  analyzing: boolean;
  analysis: NotebookAnalysis | null;
  /** Why the notebook cannot be analyzed (e.g. a syntax error in a cell), with the fix. */
  analysisError: ErrorInfo | null;
  /** The chosen pipeline when the notebook defines several. */
  pipeline: string | null;
  raws: Record<string, RawValue>;
  fieldErrors: Record<string, string>;
  submitting: boolean;
  /** The run shown in the run view. */
  runId: string | null;
  runState: string | null;
  runs: RunSummary[];
  runsError: ErrorInfo | null;
  status: RunnerStatus | null;
  settings: RunnerSettings | null;
  /** The last failed action (run, cancel, export, settings). */
  error: ErrorInfo | null;
  notice: string | null;
  /** The last KFP export: which images its YAML references and how to build and push them. */
  kfp: KfpExport | null;
  /** The step image KFP exports reference instead of nbpipe/base:pyX.Y (empty: the default). */
  kfpImage: string;
}

export interface KfpExport {
  path: string;
  size: number;
  images: KfpImage[];
  /** The image used in place of the default (null: the default). */
  image: string | null;
  note: string;
}

const KFP_IMAGE_KEY = 'nbpipe:kfp-image';
const RECONNECT_HINT = 'Reopen the run from the list to reconnect (the panel does when the runner answers again).';

function storedKfpImage(): string {
  try {
    return globalThis.localStorage?.getItem(KFP_IMAGE_KEY) ?? '';
  } catch {
    return '';
  }
}

export interface ModelOptions {
  /** Delay before re-opening a dropped event stream, by attempt (ms). */
  retryDelays?: number[];
  /**
   * Saves the notebook if it has unsaved changes, resolving true when it did (the panel passes the
   * Lab context's save). Called only when the user runs or exports, never to analyze.
   */
  save?: (path: string) => Promise<boolean | void>;
  /**
   * The notebook's JSON as the editor holds it (outputs left out), once the editor has loaded it,
   * for analysis without saving; null: the server reads the saved file.
   */
  content?: (path: string) => Promise<NotebookContent | null>;
  /** How long edits must pause before a notebook that failed to analyze is looked at again (ms). */
  settleDelay?: number;
}

/** A notebook's JSON (nbformat 4), as sent to `POST /notebook/analyze`. */
export type NotebookContent = { cells: unknown[] } & Record<string, unknown>;

export class PanelModel {
  readonly changed = new Emitter<PanelState>();
  readonly snapshot = new Emitter<RunSnapshot>();
  readonly event = new Emitter<RunEvent>();
  private _state: PanelState = {
    notebook: null,
    analyzing: false,
    analysis: null,
    analysisError: null,
    pipeline: null,
    raws: {},
    fieldErrors: {},
    submitting: false,
    runId: null,
    runState: null,
    runs: [],
    runsError: null,
    status: null,
    settings: null,
    error: null,
    notice: null,
    kfp: null,
    kfpImage: storedKfpImage()
  };
  private stream: AbortController | null = null;
  private analysisSeq = 0;
  private readonly retryDelays: number[];
  private readonly save: (path: string) => Promise<boolean | void>;
  private readonly content: (path: string) => Promise<NotebookContent | null>;
  private readonly settleDelay: number;
  private settleTimer: ReturnType<typeof setTimeout> | undefined;
  private settleWaiters: Array<() => void> = [];
  /** Per notebook, the parameter values typed in the form (those not at their default), kept across a switch. */
  private readonly typed = new Map<string, Record<string, RawValue>>();
  /** A run or re-run is being started (analysis, save, export, submit): a second click waits for none. */
  private starting = false;
  /** Counts the runs shown and asked for: an older openRun's answer is dropped. */
  private showSeq = 0;

  constructor(readonly api: NbpipeApi, options: ModelOptions = {}) {
    this.retryDelays = options.retryDelays ?? [250, 1000, 3000, 5000];
    this.settleDelay = options.settleDelay ?? 700;
    this.save = options.save ?? (() => Promise.resolve(false));
    this.content = options.content ?? (() => Promise.resolve(null));
  }

  get state(): Readonly<PanelState> {
    return this._state;
  }

  private update(patch: Partial<PanelState>): void {
    this._state = { ...this._state, ...patch };
    this.changed.emit(this._state);
  }

  // ------------------------------------------------------------------ notebook

  /** Switch to a notebook (null: none open) and analyze it. */
  async setNotebook(path: string | null): Promise<void> {
    if (path === this._state.notebook) {
      return;
    }
    // the last notebook's messages ("Fix the highlighted parameters first.", "Exported …") are not this one's,
    // nor is its run: the Run section shows a run of the notebook shown (one still going is followed again)
    const shown = this._state.runId ? this._state.runs.find(r => r.id === this._state.runId) : undefined;
    const keep = shown !== undefined && path !== null && ofNotebook(shown, path);
    if (this._state.runId && !keep) {
      this.stop();
    }
    this.keepTyped();
    // Values typed for a notebook come back with it: switching tabs and back used to put the form
    // back to the defaults, and the next Run Pipeline ran with them.
    const raws = (path && this.typed.get(path)) || {};
    this.update({ notebook: path, analysis: null, analysisError: null, pipeline: null, raws, fieldErrors: {},
                  error: null, notice: null, ...(keep ? {} : { runId: null, runState: null }) });
    if (path) {
      this.attachLive();
      await this.analyze();
    }
  }

  /** Remember the current notebook's typed parameter values (only those that differ from the default). */
  private keepTyped(): void {
    const { notebook, analysis, raws } = this._state;
    if (!notebook || !analysis) {
      return;
    }
    const changed = analysis.parameters.filter(p => p.name in raws && JSON.stringify(raws[p.name]) !== JSON.stringify(initialRaw(p)));
    this.typed.set(notebook, Object.fromEntries(changed.map(p => [p.name, raws[p.name]])));
  }

  /**
   * Analyze the current notebook as the editor holds it (never saving it): pipelines, parameters,
   * components. A notebook without a pipeline is a normal answer (`analysis.pipeline` null).
   */
  async analyze(pipeline: string | null = this._state.pipeline): Promise<void> {
    const path = this._state.notebook;
    if (!path) {
      return;
    }
    const seq = ++this.analysisSeq;
    this.update({ analyzing: true, analysisError: null, pipeline });
    try {
      const analysis = await this.api.analyze(path, pipeline, await this.content(path));
      if (seq !== this.analysisSeq || path !== this._state.notebook) {
        return; // a newer analysis or another notebook took over
      }
      // Keep what the user typed for parameters that still exist; a field left at its default
      // follows the notebook (an edited constant cell changes the default).
      const before = new Map((this._state.analysis?.parameters ?? []).map(p => [p.name, p]));
      const raws: Record<string, RawValue> = {};
      for (const p of analysis.parameters) {
        const old = before.get(p.name);
        const typed = p.name in this._state.raws && (!old || JSON.stringify(this._state.raws[p.name]) !== JSON.stringify(initialRaw(old)));
        raws[p.name] = typed ? this._state.raws[p.name] : initialRaw(p);
      }
      this.update({ analyzing: false, analysis, raws, fieldErrors: {}, pipeline: analysis.pipeline });
    } catch (err) {
      if (seq === this.analysisSeq) {
        this.update({ analyzing: false, analysis: null, analysisError: errorInfo(err) });
      }
    }
  }

  /**
   * The notebook at `path` was edited or saved. If it could not be analyzed (an export error keeps
   * Run disabled), look again once the edits pause, so the fix enables Run without a click on ↻.
   * Resolves when that analysis is done (at once when nothing needs a look).
   */
  notebookChanged(path: string | null): Promise<void> {
    const failed = this._state.analysisError !== null || (this._state.analysis === null && !this._state.analyzing);
    if (!path || path !== this._state.notebook || !failed) {
      return Promise.resolve();
    }
    clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => {
      const waiters = this.settleWaiters;
      this.settleWaiters = [];
      void this.analyze().finally(() => waiters.forEach(w => w()));
    }, this.settleDelay);
    return new Promise(resolve => this.settleWaiters.push(resolve));
  }

  setParam(name: string, raw: RawValue): void {
    const fieldErrors = { ...this._state.fieldErrors };
    delete fieldErrors[name];
    this.update({ raws: { ...this._state.raws, [name]: raw }, fieldErrors });
  }

  /** Fill the form with `raws` (a cloned run's parameters), saying `notice`. */
  fillParams(raws: Record<string, RawValue>, notice: string): void {
    this.update({ raws: { ...this._state.raws, ...raws }, fieldErrors: {}, notice, error: null });
  }

  /** Put every parameter back to its default. */
  resetParams(): void {
    const params = this._state.analysis?.parameters ?? [];
    this.update({ raws: Object.fromEntries(params.map(p => [p.name, initialRaw(p)])), fieldErrors: {} });
  }

  // ------------------------------------------------------------------ runs

  /**
   * Analyze the notebook as it is now, save it if it has unsaved changes (saying so), export,
   * submit with the form's parameters, and watch the new run. Returns its id.
   */
  runPipeline(): Promise<string | null> {
    return this.once(() => this.startPipeline());
  }

  /**
   * Start one run at a time: a double-click on Run Pipeline or Rerun (the toolbar's, the graph's,
   * the run list's) used to start two runs, the second click arriving while the first one's
   * analysis or submit was still answering. Later clicks while one is starting are ignored.
   */
  private async once(start: () => Promise<string | null>): Promise<string | null> {
    if (this.starting) {
      return null;
    }
    this.starting = true;
    try {
      return await start();
    } finally {
      this.starting = false;
    }
  }

  private async startPipeline(): Promise<string | null> {
    const path = this._state.notebook;
    if (!path || this._state.submitting) {
      return null;
    }
    // Always look again: the notebook may have been edited since (a fixed cell, a new constant).
    await this.analyze();
    const analysis = this._state.analysis;
    if (!analysis) {
      return null;
    }
    if (analysis.pipeline === null) {
      this.update({ notice: noPipeline(analysis) });
      return null;
    }
    const { values, errors } = collectParams(analysis.parameters, this._state.raws);
    if (Object.keys(errors).length) {
      this.update({ fieldErrors: errors, error: { message: 'Fix the highlighted parameters first.', hint: '', cell: null } });
      return null;
    }
    this.update({ submitting: true, error: null, notice: null, fieldErrors: {} });
    try {
      const saved = await this.save(path);
      const snapshot = await this.api.runNotebook(path, values, this._state.pipeline);
      this.update({ submitting: false, notice: saved ? savedNotice(path, 'running') : null });
      this.show(snapshot);
      void this.refreshRuns();
      void this.refreshStatus(); // the embedded runner may have just started
      return snapshot.id;
    } catch (err) {
      const info = errorInfo(err);
      this.update({ submitting: false, error: info });
      if (info.cell !== null) {
        this.update({ analysisError: info });
      }
      return null;
    }
  }

  /** Show a run in the run view and follow its events (unless another run was shown meanwhile). */
  async openRun(id: string): Promise<void> {
    const seq = ++this.showSeq;
    try {
      const snapshot = await this.api.run(id);
      if (seq !== this.showSeq) {
        return; // a slow answer for a run clicked earlier must not replace the run started since
      }
      this.show(snapshot);
    } catch (err) {
      this.update({ error: errorInfo(err) });
    }
  }

  async cancel(id: string | null = this._state.runId): Promise<void> {
    if (!id) {
      return;
    }
    try {
      await this.api.cancel(id);
      this.update({ notice: `Cancelling run ${id}…`, error: null });
    } catch (err) {
      this.update({ error: errorInfo(err) });
    }
  }

  /**
   * Run again (from `fromStep`: that step and everything after it run again, the earlier steps'
   * outputs are reused) and watch the new run. A run of a notebook re-runs the notebook as saved
   * now (the server exports it again), so *that* notebook (the run's, which may not be the one the
   * panel shows) is saved first if its cells were edited: a fixed cell counts.
   */
  rerun(id: string | null = this._state.runId, fromStep: string | null = null): Promise<string | null> {
    return this.once(() => this.startRerun(id, fromStep));
  }

  private async startRerun(id: string | null, fromStep: string | null, run?: RunSnapshot): Promise<string | null> {
    if (!id) {
      return null;
    }
    try {
      const path = runNotebook({ labels: (run ?? (await this.api.run(id))).labels ?? {} });
      // Saving is said, as Run Pipeline says it: the file changed because of this click.
      const saved = path ? await this.save(path) : false;
      const snapshot = await this.api.rerun(id, fromStep);
      this.update({ error: null, notice: saved && path ? savedNotice(path, 're-running') : null });
      this.show(snapshot);
      void this.refreshRuns();
      return snapshot.id;
    } catch (err) {
      this.update({ error: errorInfo(err) });
      return null;
    }
  }

  /** Re-run a failed run from its first failed step (earlier steps' outputs are reused). */
  rerunFromFailed(id: string): Promise<string | null> {
    return this.once(() => this.startRerunFromFailed(id));
  }

  private async startRerunFromFailed(id: string): Promise<string | null> {
    try {
      const run = await this.api.run(id);
      const failed = run.steps.find(s => s.state === 'failed');
      if (!failed) {
        this.update({ error: { message: `Run ${id} has no failed step to re-run from.`, hint: '', cell: null } });
        return null;
      }
      return await this.startRerun(id, failed.name, run);
    } catch (err) {
      this.update({ error: errorInfo(err) });
      return null;
    }
  }

  async refreshRuns(): Promise<void> {
    try {
      const runs = await this.api.runs(50);
      // "Cancelling run X…" is over once X is: the list shows how it ended
      const notice = this._state.notice;
      const over = notice?.startsWith('Cancelling run ')
        ? runs.some(r => notice === `Cancelling run ${r.id}…` && ['succeeded', 'failed', 'cancelled'].includes(r.state))
        : false;
      this.update({ runs, runsError: null, ...(over ? { notice: null } : {}) });
      this.attachLive();
    } catch (err) {
      this.update({ runsError: errorInfo(err) });
    }
  }

  /**
   * With no run shown yet (a page just loaded or reloaded, another notebook opened), show the open
   * notebook's newest run, as the panel showed it before: one still going is followed live again,
   * a finished one shows how it ended (the section used to stay empty after a reload).
   */
  private attachLive(): void {
    const notebook = this._state.notebook;
    if (this._state.runId || this._state.submitting || !notebook) {
      return;
    }
    const live = this._state.runs.find(r => ofNotebook(r, notebook)); // the list is newest first
    if (live) {
      this.update({ runId: live.id }); // once: a second list before the snapshot answers does not open it twice
      void this.openRun(live.id);
    }
  }

  /** A step's log in the run shown, or in `run` (the one a cached step's outputs came from). */
  loadLogs(step: string, attempt?: number | null, run?: string): Promise<string> {
    const id = run ?? this._state.runId;
    return id ? this.api.logs(id, step, attempt) : Promise.reject(new Error('No run is open'));
  }

  private show(snapshot: RunSnapshot): void {
    this.showSeq += 1;
    this.stop();
    this.update({ runId: snapshot.id, runState: snapshot.state });
    this.snapshot.emit(snapshot);
    if (!RUN_FINAL.has(snapshot.state)) {
      void this.follow(snapshot.id, snapshot.last_event_id);
    }
  }

  private async follow(id: string, after: number): Promise<void> {
    const controller = new AbortController();
    this.stream = controller;
    let last = after;
    let failures = 0;
    let finished = false;
    const onEvent = (event: RunEvent): void => {
      if (controller.signal.aborted || event.run_id !== id) {
        return;
      }
      last = Math.max(last, event.id);
      failures = 0;
      this.event.emit(event);
      if (event.type === 'RunStarted') {
        this.update({ runState: 'running' });
      } else if (event.type === 'RunFinished') {
        finished = true;
        this.update({ runState: event.state });
        void this.refreshRuns();
      }
    };
    while (!controller.signal.aborted && !finished) {
      try {
        last = await this.api.events(id, last, onEvent, controller.signal);
        if (!finished) {
          // The stream ended without RunFinished: the run may have finished while we reconnected.
          const snap = await this.api.run(id);
          if (RUN_FINAL.has(snap.state) && !controller.signal.aborted) {
            this.snapshot.emit(snap);
            this.update({ runState: snap.state });
            void this.refreshRuns();
            finished = true;
          }
        }
      } catch (err) {
        if (controller.signal.aborted) {
          return;
        }
        if (failures >= this.retryDelays.length) {
          this.update({ error: { ...errorInfo(err), hint: RECONNECT_HINT } });
          return;
        }
        await new Promise(resolve => setTimeout(resolve, this.retryDelays[failures]));
        failures += 1;
      }
    }
    if (this.stream === controller) {
      this.stream = null;
    }
  }

  /** Stop following the current run's events. */
  stop(): void {
    this.stream?.abort();
    this.stream = null;
  }

  // ------------------------------------------------------------------ runner

  /**
   * Ask the server how the runner is (the panel does every few seconds while it is shown). When
   * a runner that did not answer answers again (restarted, back on the network), the run list is
   * fetched again and the run being watched is followed again, without a click.
   */
  async refreshStatus(): Promise<void> {
    const before = this._state.status;
    try {
      const [status, settings] = await Promise.all([this.api.status(), this.api.settings()]);
      const back = before !== null && !before.reachable && status.reachable;
      this.update({ status, settings, runsError: back ? null : this._state.runsError });
      if (back) {
        void this.refreshRuns();
        const id = this._state.runId;
        if (this._state.error?.hint === RECONNECT_HINT) {
          this.update({ error: null }); // the stream gave up while the runner was down: it is back
        }
        if (id && !RUN_FINAL.has(this._state.runState ?? '')) {
          void this.openRun(id);
        }
      }
    } catch (err) {
      // The Jupyter server itself did not answer (restarting?): say so in the status, not as an error box.
      this.update({ status: { mode: before?.mode ?? 'embedded', url: before?.url ?? null, source: before?.source ?? 'default', reachable: false, error: errorInfo(err).message, health: null, server: false } });
    }
  }

  /** Store the runner URL (empty: the embedded runner); `token` undefined keeps the stored one. */
  async saveRunnerUrl(url: string, token?: string): Promise<boolean> {
    try {
      const settings = await this.api.saveSettings(url.trim() || null, token === '' ? undefined : token);
      this.update({ settings, error: null, notice: settings.runner_url ? `Runner set to ${settings.runner_url}` : 'Using the embedded runner' });
      await this.refreshStatus();
      void this.refreshRuns();
      return true;
    } catch (err) {
      this.update({ error: errorInfo(err) });
      return false;
    }
  }

  async exportNotebook(format: 'nbpipe' | 'kfp'): Promise<string | null> {
    const path = this._state.notebook;
    if (!path) {
      return null;
    }
    if (this._state.analysis?.pipeline === null) {
      this.update({ notice: noPipeline(this._state.analysis) });
      return null;
    }
    try {
      const saved = await this.save(path);
      const image = format === 'kfp' ? this._state.kfpImage.trim() || null : null;
      const result = await this.api.exportNotebook(path, format, this._state.pipeline, image);
      const size = `${Math.max(1, Math.round(result.size / 1024))} KB`;
      const kfp: KfpExport | null = format === 'kfp'
        ? { path: result.path, size: result.size, images: result.images ?? [], image: result.image ?? null, note: result.note ?? '' }
        : this._state.kfp;
      this.update({ notice: `${saved ? savedNotice(path, 'exporting') + ' ' : ''}Exported ${result.path} (${size})`, error: null, kfp });
      return result.path;
    } catch (err) {
      const info = errorInfo(err);
      this.update({ error: info, analysisError: info.cell !== null ? info : this._state.analysisError });
      return null;
    }
  }

  dismissMessages(): void {
    this.update({ error: null, notice: null });
  }

  /** Remember the pushed step image KFP exports reference (empty: nbpipe/base:pyX.Y), in this browser. */
  setKfpImage(image: string): void {
    try {
      globalThis.localStorage?.setItem(KFP_IMAGE_KEY, image.trim());
    } catch {
      // storage refused (private mode): kept for this session only
    }
    this.update({ kfpImage: image.trim() });
  }

  dismissKfp(): void {
    this.update({ kfp: null });
  }

  dispose(): void {
    this.stop();
  }
}

/** What the panel says when it saved the notebook because the user ran or exported it. */
function savedNotice(path: string, doing: string): string {
  return `Saved ${path.split('/').pop()} before ${doing} (it had unsaved changes).`;
}

/** The normal "no pipeline here yet" answer, with how to add one. */
export function noPipeline(analysis: NotebookAnalysis): string {
  const reason = analysis.reason;
  return reason ? `${reason.message}. ${reason.hint}` : `No pipeline in ${analysis.path} yet.`;
}

/** The run came from `notebook` (its label holds the path, or a longer path ending in it). */
function ofNotebook(run: RunSummary, notebook: string): boolean {
  const source = runNotebook(run);
  return source !== undefined && (source === notebook || source.endsWith(`/${notebook}`));
}
