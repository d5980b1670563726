/**
 * A run's timing as a timeline (one bar per step, on the run's own clock), without the DOM:
 * steps from the snapshot, kept current by StepStarted / StepFinished events; running steps
 * grow until now. Cached and skipped steps that never ran are marks at the moment they were
 * settled. The run page draws it under the graph.
 *
 * Non-goals: drawing, per-attempt bars (a retried step shows its whole span).
 */

import type { RunEvent, RunSnapshot } from './events';
import { STEP_FINAL } from './events';

export interface TimelineStep {
  name: string;
  state: string;
  start: number | null;
  end: number | null;
}

export interface TimelineRow {
  name: string;
  state: string;
  /** Where the bar starts and how long it is, as fractions of the run's span (0..1). */
  left: number;
  width: number;
  seconds: number | null;
}

export class Timeline {
  private readonly steps = new Map<string, TimelineStep>();
  private runStart: number | null = null;
  private runEnd: number | null = null;

  setSnapshot(snap: RunSnapshot): void {
    this.steps.clear();
    this.runStart = snap.started_at ?? snap.created_at ?? null;
    this.runEnd = snap.finished_at ?? null;
    for (const s of snap.steps) {
      const raw = s as unknown as { started_at?: number | null; finished_at?: number | null };
      this.steps.set(s.name, { name: s.name, state: s.state, start: raw.started_at ?? null, end: raw.finished_at ?? null });
    }
  }

  /** Fold an event in; true when the timeline changed. */
  apply(event: RunEvent): boolean {
    if (event.type === 'RunStarted') {
      this.runStart = this.runStart ?? event.ts;
      return true;
    }
    if (event.type === 'RunFinished') {
      this.runEnd = event.ts;
      return true;
    }
    if (event.type === 'StepStarted') {
      const s = this.steps.get(event.step) ?? { name: event.step, state: 'running', start: null, end: null };
      this.steps.set(event.step, { ...s, state: 'running', start: s.start ?? event.ts, end: null });
      return true;
    }
    if (event.type === 'StepRetrying') {
      const s = this.steps.get(event.step);
      if (s) {
        this.steps.set(event.step, { ...s, state: 'retrying' });
      }
      return Boolean(s);
    }
    if (event.type === 'StepFinished') {
      const s = this.steps.get(event.step) ?? { name: event.step, state: event.state, start: null, end: null };
      this.steps.set(event.step, { ...s, state: event.state, end: event.ts });
      return true;
    }
    if (event.type === 'StepsAdded') {
      for (const spec of event.steps) {
        const name = String(spec.name ?? '');
        if (name && !this.steps.has(name)) {
          this.steps.set(name, { name, state: 'pending', start: null, end: null });
        }
      }
      return true;
    }
    return false;
  }

  /** Rows in order of start (pending steps last), scaled to the run's span up to `now`. */
  rows(now: number): TimelineRow[] {
    const all = [...this.steps.values()];
    const times = all.flatMap(s => [s.start, s.end]).filter((t): t is number => t !== null);
    const t0 = Math.min(...(this.runStart !== null ? [this.runStart] : []), ...times);
    if (!Number.isFinite(t0)) {
      return all.map(s => ({ name: s.name, state: s.state, left: 0, width: 0, seconds: null }));
    }
    const running = all.some(s => s.start !== null && s.end === null && !STEP_FINAL.has(s.state));
    const t1 = Math.max(this.runEnd ?? 0, ...times, running || this.runEnd === null ? now : 0);
    const span = Math.max(t1 - t0, 1e-3);
    const key = (s: TimelineStep): number => s.start ?? s.end ?? Number.POSITIVE_INFINITY;
    const order = new Map(all.map((s, i) => [s.name, i])); // ties (cached steps): the run's step order
    return all
      .sort((a, b) => key(a) - key(b) || (order.get(a.name) ?? 0) - (order.get(b.name) ?? 0))
      .map(s => {
        if (s.start === null) {
          const at = s.end === null ? null : (s.end - t0) / span;
          return { name: s.name, state: s.state, left: at ?? 0, width: 0, seconds: null };
        }
        const end = s.end ?? (STEP_FINAL.has(s.state) ? s.start : now);
        return { name: s.name, state: s.state, left: (s.start - t0) / span, width: Math.max(0, end - s.start) / span, seconds: Math.max(0, end - s.start) };
      });
  }

  get size(): number {
    return this.steps.size;
  }
}
