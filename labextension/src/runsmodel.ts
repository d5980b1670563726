/**
 * The live run list, without the DOM: one page of runs (filters, search, paging) kept current by
 * the runner's event stream of all runs. Run states change in place as events arrive; a new or
 * finished run reloads the page (debounced, so a burst of events costs one request); durations
 * of running runs are computed from `started_at` at render time, so they never go stale.
 *
 * Non-goals: DOM (runsview.ts), JupyterLab APIs, following one run's logs (the run page does).
 */

import type { DashboardApi, RunFacets, RunFilters } from './dashboard_api';
import { NO_FILTERS } from './dashboard_api';
import { RUN_FINAL, RunEvent, RunSummary } from './events';
import { ErrorInfo, errorInfo } from './format';

export const MAX_COMPARE = 10;

type Listener<T> = (value: T) => void;

export class Emitter<T> {
  private listeners = new Set<Listener<T>>();
  connect(fn: Listener<T>): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  emit(value: T): void {
    for (const fn of [...this.listeners]) {
      fn(value);
    }
  }
}

export interface RunListState {
  filters: RunFilters;
  offset: number;
  limit: number;
  runs: RunSummary[];
  total: number;
  facets: RunFacets | null;
  loading: boolean;
  error: ErrorInfo | null;
  /** True while the event stream is connected. */
  live: boolean;
  /** Runs ticked for Compare, in the order they were ticked. */
  selected: string[];
  /** How long the last page took to arrive (ms), for the status line and the benchmark. */
  loadMs: number | null;
  /** The archived runs instead of the others (Kubeflow's Archived tab). */
  archived: boolean;
}

export interface RunListOptions {
  limit?: number;
  /** Wait this long after a run is created or finishes before reloading the page (ms). */
  debounceMs?: number;
  retryDelays?: number[];
  clock?: () => number;
}

/** Seconds a run has taken: to now while it is running, else its recorded duration. */
export function liveDuration(run: Pick<RunSummary, 'state' | 'started_at' | 'duration'>, nowSeconds: number): number | null {
  if (!RUN_FINAL.has(run.state) && run.started_at) {
    return Math.max(0, nowSeconds - run.started_at);
  }
  return run.duration;
}

/** `1–50 of 10,000` */
export function pageLabel(offset: number, shown: number, total: number): string {
  if (!total) {
    return 'No runs';
  }
  const fmt = (n: number): string => n.toLocaleString('en-US');
  return `${fmt(offset + 1)}–${fmt(offset + shown)} of ${fmt(total)}`;
}

export class RunListModel {
  readonly changed = new Emitter<RunListState>();
  private _state: RunListState;
  private lastEventId = 0;
  private seq = 0;
  private stream: AbortController | null = null;
  private reloadTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly debounceMs: number;
  private readonly retryDelays: number[];
  private readonly clock: () => number;
  private disposed = false;

  constructor(readonly api: DashboardApi, options: RunListOptions = {}) {
    this.debounceMs = options.debounceMs ?? 300;
    this.retryDelays = options.retryDelays ?? [250, 1000, 3000, 5000, 10000];
    this.clock = options.clock ?? (() => Date.now());
    this._state = {
      filters: { ...NO_FILTERS },
      offset: 0,
      limit: options.limit ?? 50,
      runs: [],
      total: 0,
      facets: null,
      loading: false,
      error: null,
      live: false,
      selected: [],
      loadMs: null,
      archived: false
    };
  }

  get state(): Readonly<RunListState> {
    return this._state;
  }

  private update(patch: Partial<RunListState>): void {
    this._state = { ...this._state, ...patch };
    this.changed.emit(this._state);
  }

  /** Load the first page with the filter values, then follow every run's events. */
  async start(): Promise<void> {
    await this.load(true);
    if (!this.stream && !this.disposed) {
      void this.follow();
    }
  }

  /** Fetch the current page (with facets when asked); a newer load wins over an older one. */
  async load(facets = false): Promise<void> {
    const seq = ++this.seq;
    const { filters, offset, limit } = this._state;
    this.update({ loading: true });
    const t0 = this.clock();
    try {
      const page = await this.api.runPage(filters, offset, limit, facets || !this._state.facets, this._state.archived);
      if (seq !== this.seq || this.disposed) {
        return;
      }
      this.lastEventId = Math.max(this.lastEventId, page.last_event_id);
      this.update({
        runs: page.runs,
        total: page.total,
        facets: page.facets ?? this._state.facets,
        loading: false,
        error: null,
        loadMs: this.clock() - t0
      });
    } catch (err) {
      if (seq === this.seq) {
        this.update({ loading: false, error: errorInfo(err) });
      }
    }
  }

  setFilter(key: keyof RunFilters, value: string): Promise<void> {
    if (this._state.filters[key] === value) {
      return Promise.resolve();
    }
    this.update({ filters: { ...this._state.filters, [key]: value }, offset: 0 });
    return this.load();
  }

  clearFilters(): Promise<void> {
    this.update({ filters: { ...NO_FILTERS }, offset: 0 });
    return this.load();
  }

  /** Go to the page starting at `offset` (clamped to the runs that exist). */
  setOffset(offset: number): Promise<void> {
    const { limit, total } = this._state;
    const last = Math.max(0, Math.floor(Math.max(0, total - 1) / limit) * limit);
    const next = Math.max(0, Math.min(offset, last));
    if (next === this._state.offset) {
      return Promise.resolve();
    }
    this.update({ offset: next });
    return this.load();
  }

  nextPage(): Promise<void> {
    return this.setOffset(this._state.offset + this._state.limit);
  }

  previousPage(): Promise<void> {
    return this.setOffset(this._state.offset - this._state.limit);
  }

  /** Tick or untick a run for Compare (at most MAX_COMPARE; the oldest tick makes room). */
  toggleSelected(id: string): void {
    const selected = this._state.selected.includes(id)
      ? this._state.selected.filter(s => s !== id)
      : [...this._state.selected, id].slice(-MAX_COMPARE);
    this.update({ selected });
  }

  clearSelection(): void {
    this.update({ selected: [] });
  }

  /** Show the archived runs (or the others), from the first page, nothing ticked. */
  setArchived(archived: boolean): Promise<void> {
    if (this._state.archived === archived) {
      return Promise.resolve();
    }
    this.update({ archived, offset: 0, selected: [], facets: null, runs: [], total: 0, loading: true });
    return this.load(true);
  }

  /** Take runs that left this list (archived, restored, deleted) off the page now, then refill it. */
  dropRuns(ids: string[]): Promise<void> {
    const gone = new Set(ids);
    const runs = this._state.runs.filter(r => !gone.has(r.id));
    const total = Math.max(0, this._state.total - (this._state.runs.length - runs.length));
    this.update({ runs, total, selected: this._state.selected.filter(id => !gone.has(id)) });
    return this.load(true);
  }

  /** Fold one event into the page; new and finished runs also reload it (debounced). */
  apply(event: RunEvent): void {
    const index = this._state.runs.findIndex(r => r.id === event.run_id);
    const run = index >= 0 ? this._state.runs[index] : null;
    let next: RunSummary | null = null;
    switch (event.type) {
      case 'RunCreated':
      case 'RunStorage': // archived, restored or deleted (here, in another page, the CLI or a notebook)
        this.scheduleReload();
        return;
      case 'RunStarted':
        if (run) {
          next = { ...run, state: 'running', started_at: run.started_at ?? event.ts };
        }
        break;
      case 'RunFinished':
        if (run) {
          next = { ...run, state: event.state, finished_at: event.ts, duration: event.duration, reason: event.reason };
        }
        this.scheduleReload();
        break;
      case 'StepStarted':
      case 'StepFinished': {
        if (run) {
          const counts = { ...run.step_counts };
          const to = event.type === 'StepStarted' ? 'running' : event.state;
          const from = event.type === 'StepStarted' ? (event.attempt > 1 ? 'retrying' : 'pending') : 'running';
          if ((counts[from] ?? 0) > 0) {
            counts[from] = (counts[from] ?? 0) - 1;
          } else if (event.type === 'StepFinished' && (counts.pending ?? 0) > 0) {
            counts.pending = (counts.pending ?? 0) - 1; // cached and skipped steps never ran
          }
          counts[to] = (counts[to] ?? 0) + 1;
          next = { ...run, step_counts: counts };
        }
        break;
      }
      default:
        return;
    }
    if (next && index >= 0) {
      const runs = this._state.runs.slice();
      runs[index] = next;
      this.update({ runs });
    }
  }

  private scheduleReload(): void {
    if (this.reloadTimer !== null || this.disposed) {
      return;
    }
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      void this.load(true);
    }, this.debounceMs);
  }

  /** Follow every run's events from the last id seen, reconnecting after a dropped stream. */
  private async follow(): Promise<void> {
    const controller = new AbortController();
    this.stream = controller;
    let failures = 0;
    while (!controller.signal.aborted) {
      try {
        this.update({ live: true });
        this.lastEventId = await this.api.allEvents(
          this.lastEventId,
          event => {
            failures = 0;
            this.lastEventId = Math.max(this.lastEventId, event.id);
            this.apply(event);
          },
          controller.signal
        );
      } catch (err) {
        if (controller.signal.aborted) {
          break;
        }
        this.update({ live: false });
        const delay = this.retryDelays[Math.min(failures, this.retryDelays.length - 1)];
        failures += 1;
        await new Promise(resolve => setTimeout(resolve, delay));
        void this.load(true); // catch up on what happened while disconnected
      }
    }
    if (this.stream === controller) {
      this.stream = null;
    }
  }

  dispose(): void {
    this.disposed = true;
    this.stream?.abort();
    this.stream = null;
    if (this.reloadTimer !== null) {
      clearTimeout(this.reloadTimer);
      this.reloadTimer = null;
    }
  }
}
