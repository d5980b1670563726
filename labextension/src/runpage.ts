/**
 * A run page in JupyterLab's main area: the whole run graph (the shared run view,
 * `nbpipe/widgets/run_view.js`, fitted to the page and refitted as the page is resized), step
 * details with logs, inputs, outputs with previews and a "Lineage" link per artifact, the run's
 * parameters and timing, and its actions (cancel, re-run, re-run from a step). It follows the
 * run's events live until the run finishes. One page per run; several can sit side by side.
 *
 * Non-goals: state beyond the run id (restoring a page needs only that), the run list.
 */

import type { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { createRunView, RunView } from '../../nbpipe/widgets/run_view.js';
import type { NbpipeApi } from './api';
import { RunArchiveControl } from './archive';
import type { RunStorage } from './archivemodel';
import { h } from './dom';
import type { RunEvent, RunSnapshot } from './events';
import { RunFollower } from './follow';
import { confirmCancel } from './confirm';
import { downloadOutput } from './download';
import { ErrorInfo, formatClock, formatDuration, runNotebook } from './format';
import { nbpipeIcon } from './icons';
import { Timeline } from './timeline';

export interface RunPageActions {
  openRun(id: string): void;
  openLineage(run: string, step: string, output: string): void;
  /** Save the run's notebook if open with edited cells (a re-run exports it as saved). */
  saveNotebook?(path: string): Promise<boolean>;
  /** Archive / Restore (archive.ts), shared with the Runs pages. */
  storage?: RunStorage;
}

export class RunPage extends Widget {
  private readonly host = h('div', { class: 'nbp-runpage-host' });
  private readonly banner = h('div', { class: 'nbp-runpage-banner', role: 'alert', hidden: true });
  private readonly view: RunView;
  private readonly follower: RunFollower;
  private readonly images = new Map<string, string>();
  private readonly timeline = new Timeline();
  private readonly timelineBody = h('div', { class: 'nbp-timeline-body', role: 'list', 'aria-label': 'Step timeline' });
  private readonly timelineSummary = h('summary', { class: 'nbp-timeline-summary' });
  private timelineFrame = 0;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private fitted = false;
  private shown = false; // a snapshot arrived: the run exists and this user may see it
  private timelineBox: HTMLElement | null = null;
  private fitFrame = 0;
  private rerunning = false; // a double-click on Rerun starts one run, not two
  private readonly archive: RunArchiveControl | null;

  constructor(
    readonly runId: string,
    private readonly api: NbpipeApi,
    private readonly actions: RunPageActions
  ) {
    super();
    this.id = `nbpipe-run-${runId}`;
    this.addClass('nbp-runpage');
    this.title.label = `Run ${runId}`;
    this.title.caption = `nbpipe run ${runId}`;
    this.title.icon = nbpipeIcon;
    this.title.closable = true;
    this.node.dataset.run = runId;
    const timelineBox = h('details', { class: 'nbp-timeline' }, this.timelineSummary, this.timelineBody);
    (timelineBox as HTMLDetailsElement).open = true;
    this.timelineBox = timelineBox;
    this.node.append(this.banner, this.host, timelineBox);
    this.view = createRunView(this.host, {
      loadLogs: (step, attempt, run) => this.api.logs(run ?? runId, step, attempt),
      loadImage: preview => this.loadImage(preview.digest, typeof preview.mime === 'string' ? preview.mime : 'image/png'),
      onAction: (action, payload) => void this.act(action, payload),
      onLineage: (step, output) => this.actions.openLineage(runId, step, output),
      onDownload: (step, output, out) => void downloadOutput((d, m) => this.api.artifact(d, m), step, output, out, this.view)
    });
    this.archive = actions.storage ? new RunArchiveControl(actions.storage, runId, this.host, n => this.view.setNotice?.(n)) : null;
    this.follower = new RunFollower(api, runId);
    this.follower.snapshot.connect(snap => this.showSnapshot(snap));
    this.follower.event.connect((event: RunEvent) => {
      this.view.applyEvent(event);
      this.archive?.applyEvent(event);
      if (this.timeline.apply(event)) {
        this.scheduleTimeline();
      }
    });
    this.follower.error.connect(info => this.setError(info));
    void this.follower.start();
  }

  private showSnapshot(snap: RunSnapshot): void {
    this.shown = true;
    this.host.hidden = false;
    if (this.timelineBox) {
      this.timelineBox.hidden = false;
    }
    this.view.setSnapshot(snap);
    this.archive?.setSnapshot(snap);
    this.timeline.setSnapshot(snap);
    this.renderTimeline();
    const name = snap.name || snap.pipeline || snap.id;
    // Generated names share a long prefix ("digits 2026-11-30 19:02…"): keep tabs apart by time.
    const time = formatClock(snap.created_at);
    this.title.label = name.length <= 24 ? name : `${(snap.pipeline || name).slice(0, 16)} · ${time}`;
    this.title.caption = `${name}\n${snap.pipeline} · ${snap.experiment} · run ${snap.id}`;
    if (!this.fitted) {
      this.fitted = true;
      this.scheduleFit();
    }
  }

  private scheduleTimeline(): void {
    cancelAnimationFrame(this.timelineFrame);
    this.timelineFrame = requestAnimationFrame(() => this.renderTimeline());
  }

  /** One bar per step on the run's clock; running bars grow once a second. */
  private renderTimeline(): void {
    const now = Date.now() / 1000;
    const rows = this.timeline.rows(now);
    const live = rows.some(r => r.state === 'running' || r.state === 'retrying') || (this.follower.state !== null && !['succeeded', 'failed', 'cancelled'].includes(this.follower.state));
    if (live && !this.ticker) {
      this.ticker = setInterval(() => this.renderTimeline(), 1000);
    } else if (!live && this.ticker) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
    const ran = rows.filter(r => r.seconds !== null);
    const busy = ran.reduce((a, r) => a + (r.seconds ?? 0), 0);
    this.timelineSummary.replaceChildren(
      h('strong', { text: 'Timeline' }),
      h('span', { class: 'nbp-muted', text: ` · ${ran.length} of ${rows.length} steps ran${busy ? ` · ${seconds(busy)} of step time` : ''}` })
    );
    this.timelineBody.replaceChildren(
      ...rows.map(r => {
        const bar = h('span', { class: `nbp-tl-bar nbp-tl-${r.state}${r.seconds === null ? ' nbp-tl-mark' : ''}`, title: `${r.name}: ${r.state}${r.seconds !== null ? `, ${seconds(r.seconds)}` : ''}` });
        bar.style.left = `${(r.left * 100).toFixed(2)}%`;
        if (r.seconds !== null) {
          bar.style.width = `max(2px, ${(r.width * 100).toFixed(2)}%)`;
        }
        return h(
          'div',
          { class: 'nbp-tl-row', role: 'listitem', 'data-step': r.name, 'data-state': r.state },
          h('button', { type: 'button', class: 'nbp-tl-name', title: `Show ${r.name}`, text: r.name, onclick: () => this.view.select(r.name) }),
          h('span', { class: 'nbp-tl-track' }, bar),
          h('span', { class: 'nbp-tl-time', text: r.seconds !== null ? seconds(r.seconds) : r.state })
        );
      })
    );
  }

  private setError(info: ErrorInfo | null): void {
    this.banner.hidden = !info;
    // A run that never loaded (no such run, or another profile's): the message alone, no empty
    // graph waiting forever with Cancel and Rerun buttons under it.
    const none = !!info && !this.shown;
    this.host.hidden = none;
    if (this.timelineBox) {
      this.timelineBox.hidden = none;
    }
    this.banner.replaceChildren(
      ...(info ? [h('strong', { text: info.message }), info.hint ? h('span', { text: ` ${info.hint}` }) : null].filter(Boolean) as HTMLElement[] : [])
    );
  }

  private async act(action: string, payload: { step?: string; run?: string }): Promise<void> {
    const rerun = action === 'rerun' || action === 'rerun_from' || action === 'rerun_failed';
    if (rerun && this.rerunning) {
      return;
    }
    this.rerunning ||= rerun;
    try {
      if (action === 'cancel') {
        if (!(await confirmCancel(this.runId, this.title.caption.split('\n')[0]))) {
          return;
        }
        await this.api.cancel(this.runId);
        this.view.setNotice?.({ text: `Cancelling run ${this.runId}…`, kind: 'info' });
      } else if (rerun) {
        // A notebook's run re-runs the notebook as saved: a cell fixed in the editor is saved first.
        const run = await this.api.run(this.runId);
        const path = runNotebook({ labels: run.labels ?? {} });
        if (path) {
          await this.actions.saveNotebook?.(path);
        }
        const from = action === 'rerun_from' ? payload.step ?? null
          : action === 'rerun_failed' ? run.steps.find(s => s.state === 'failed')?.name ?? null : null;
        const snap = await this.api.rerun(this.runId, from);
        this.actions.openRun(snap.id);
      } else if (action === 'open' && payload.run) {
        this.actions.openRun(payload.run);
      }
    } catch (err) {
      this.view.setNotice?.({ text: err instanceof Error ? err.message.replace(/^\[nbpipe\] /, '') : String(err), kind: 'error' });
    } finally {
      if (rerun) {
        this.rerunning = false;
      }
    }
  }

  private async loadImage(digest: string, mime: string): Promise<string> {
    const known = this.images.get(digest);
    if (known) {
      return known;
    }
    const url = URL.createObjectURL(await this.api.artifact(digest, mime));
    this.images.set(digest, url);
    return url;
  }

  /** Fit the graph to the page once the page has its size (after attach, show or resize). */
  private scheduleFit(): void {
    cancelAnimationFrame(this.fitFrame);
    this.fitFrame = requestAnimationFrame(() => this.view.fit());
  }

  protected onAfterShow(): void {
    this.scheduleFit();
  }

  protected onAfterAttach(): void {
    this.scheduleFit();
  }

  protected onResize(): void {
    this.scheduleFit();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    cancelAnimationFrame(this.fitFrame);
    cancelAnimationFrame(this.timelineFrame);
    if (this.ticker) {
      clearInterval(this.ticker);
    }
    this.follower.stop();
    this.archive?.dispose();
    this.view.destroy();
    this.images.forEach(url => URL.revokeObjectURL(url));
    super.dispose();
  }

  /** Closing the tab ends the page (its streams and timers); reopening builds a fresh one. */
  protected onCloseRequest(msg: Message): void {
    super.onCloseRequest(msg);
    this.dispose();
  }
}

/** Step times: milliseconds below a second (a cached pipeline's steps take a few ms). */
function seconds(value: number): string {
  return value < 1 ? `${Math.round(value * 1000)} ms` : formatDuration(value);
}
