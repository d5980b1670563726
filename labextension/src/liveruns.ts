/**
 * Keep a short run list current from the runner's event stream of all runs: `onChange` is called
 * (debounced) when a run is created, starts, finishes or a step finishes. Used by the side panel,
 * whose list the panel model fetches. Reconnects with backoff, catching up with one `onChange`.
 *
 * Non-goals: the list itself (the panel model / runsmodel.ts), DOM.
 */

import type { DashboardApi } from './dashboard_api';
import type { RunEvent } from './events';

const TRIGGERS = new Set(['RunCreated', 'RunStarted', 'RunFinished', 'StepFinished', 'RunStorage']);

export class LiveRuns {
  private controller: AbortController | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly api: Pick<DashboardApi, 'allEvents' | 'runPage'>,
    private readonly onChange: () => void,
    private readonly debounceMs = 300,
    private readonly retryDelays: number[] = [500, 2000, 5000, 10000]
  ) {}

  get following(): boolean {
    return this.controller !== null;
  }

  /** Start following from the current last event (no replay of history). */
  async start(): Promise<void> {
    if (this.controller) {
      return;
    }
    const controller = new AbortController();
    this.controller = controller;
    let after = -1;
    let failures = 0;
    while (!controller.signal.aborted) {
      try {
        if (after < 0) {
          after = (await this.api.runPage({ experiment: '', pipeline: '', notebook: '', state: '', q: '' }, 0, 1, false)).last_event_id;
        }
        after = await this.api.allEvents(after, (event: RunEvent) => {
          failures = 0;
          if (TRIGGERS.has(event.type)) {
            this.schedule();
          }
        }, controller.signal);
      } catch {
        if (controller.signal.aborted) {
          break;
        }
        await new Promise(resolve => setTimeout(resolve, this.retryDelays[Math.min(failures, this.retryDelays.length - 1)]));
        failures += 1;
        this.schedule(); // catch up on what happened while disconnected
      }
    }
  }

  private schedule(): void {
    if (this.timer !== null) {
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      this.onChange();
    }, this.debounceMs);
  }

  stop(): void {
    this.controller?.abort();
    this.controller = null;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}
