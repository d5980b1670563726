/**
 * Follow one run without the DOM: its snapshot, then its events from the snapshot's
 * `last_event_id`; a dropped stream resumes from the last event seen (with backoff), and a stream
 * that ends without `RunFinished` is checked against a fresh snapshot. Used by the run page.
 *
 * Non-goals: folding events into a graph (the shared run view does), DOM.
 */

import type { RunEvent, RunSnapshot } from './events';
import { RUN_FINAL } from './events';
import { ErrorInfo, errorInfo } from './format';
import { Emitter } from './runsmodel';

export interface FollowApi {
  run(id: string): Promise<RunSnapshot>;
  events(id: string, after: number, onEvent: (event: RunEvent) => void, signal: AbortSignal): Promise<number>;
}

export class RunFollower {
  readonly snapshot = new Emitter<RunSnapshot>();
  readonly event = new Emitter<RunEvent>();
  readonly error = new Emitter<ErrorInfo | null>();
  private controller: AbortController | null = null;
  state: string | null = null;

  constructor(
    private readonly api: FollowApi,
    readonly runId: string,
    private readonly retryDelays: number[] = [250, 1000, 3000, 5000]
  ) {}

  /** Load the snapshot and follow the run until it finishes or `stop()`. */
  async start(): Promise<void> {
    this.stop();
    const controller = new AbortController();
    this.controller = controller;
    let snap: RunSnapshot;
    try {
      snap = await this.api.run(this.runId);
    } catch (err) {
      this.error.emit(errorInfo(err));
      return;
    }
    if (controller.signal.aborted) {
      return;
    }
    this.state = snap.state;
    this.snapshot.emit(snap);
    this.error.emit(null);
    if (RUN_FINAL.has(snap.state)) {
      return;
    }
    let last = snap.last_event_id;
    let failures = 0;
    let finished = false;
    while (!controller.signal.aborted && !finished) {
      try {
        last = await this.api.events(
          this.runId,
          last,
          event => {
            if (controller.signal.aborted || event.run_id !== this.runId) {
              return;
            }
            failures = 0;
            last = Math.max(last, event.id);
            if (event.type === 'RunFinished') {
              finished = true;
              this.state = event.state;
            }
            this.event.emit(event);
          },
          controller.signal
        );
        if (!finished && !controller.signal.aborted) {
          const fresh = await this.api.run(this.runId);
          if (RUN_FINAL.has(fresh.state)) {
            this.state = fresh.state;
            this.snapshot.emit(fresh);
            finished = true;
          }
        }
      } catch (err) {
        if (controller.signal.aborted) {
          return;
        }
        if (failures >= this.retryDelays.length) {
          this.error.emit({ ...errorInfo(err), hint: 'Reload the run page to reconnect.' });
          return;
        }
        await new Promise(resolve => setTimeout(resolve, this.retryDelays[failures]));
        failures += 1;
      }
    }
  }

  stop(): void {
    this.controller?.abort();
    this.controller = null;
  }
}
