/**
 * The run list: newest first, each run with its state, duration, notebook, parameters and
 * actions (open, cancel, re-run, re-run from the failed step).
 *
 * Durations of running runs tick once a second (`tickDurations`), so they are never stale.
 * Non-goals: fetching (the model does), paging beyond the newest 50 runs (the Runs page pages).
 */

import { button, h } from './dom';
import { RUN_FINAL, RunSummary } from './events';
import { formatAgo, formatDuration, formatParams, hasFailedSteps, runSource } from './format';

export interface RunListActions {
  open(id: string): void;
  cancel(id: string): void;
  rerun(id: string): void;
  rerunFromFailed(id: string): void;
  /** Fill the Run Pipeline form with the run's parameters, to edit them (Kubeflow's "Clone run"). */
  clone?(id: string): void;
}

const ICONS: Record<string, string> = {
  queued: '○',
  running: '●',
  succeeded: '✓',
  failed: '✗',
  cancelled: '⊘'
};

export function renderRunList(
  host: HTMLElement,
  runs: readonly RunSummary[],
  openId: string | null,
  actions: RunListActions
): void {
  if (!runs.length) {
    host.replaceChildren(h('p', { class: 'nbp-muted', text: 'No runs yet. Run a pipeline to see it here.' }));
    return;
  }
  const now = Date.now() / 1000;
  host.replaceChildren(
    h('ul', { class: 'nbp-runs', 'aria-label': 'Runs, newest first' }, ...runs.map(r => item(r, r.id === openId, now, actions)))
  );
}

function item(run: RunSummary, open: boolean, now: number, actions: RunListActions): HTMLElement {
  const active = !RUN_FINAL.has(run.state);
  const duration = active && run.started_at ? now - run.started_at : run.duration;
  const steps = Object.values(run.step_counts ?? {}).reduce((a, b) => a + (b ?? 0), 0);
  const buttons: HTMLElement[] = [];
  if (active) {
    buttons.push(button('Cancel', () => actions.cancel(run.id), { class: 'nbp-small nbp-danger', title: 'Cancel this run' }));
  } else {
    buttons.push(button('Re-run', () => actions.rerun(run.id), { class: 'nbp-small', title: 'Run again with the same parameters' }));
    if (actions.clone) {
      const clone = actions.clone;
      buttons.push(button('Clone', () => clone(run.id), { class: 'nbp-small', title: 'Fill the form above with this run’s parameters, to edit them and run' }));
    }
    if (run.state === 'failed' && hasFailedSteps(run)) {
      buttons.push(
        button('Re-run from failed', () => actions.rerunFromFailed(run.id), {
          class: 'nbp-small',
          title: 'Run again from the failed step, reusing the outputs of the steps before it'
        })
      );
    }
  }
  const params = formatParams(run.params, 24, run.float_params);
  const main = h(
    'button',
    {
      type: 'button',
      class: 'nbp-run-open',
      title: `Open run ${run.id}`,
      'aria-label': `Open run ${run.name || run.id}, ${run.state}`,
      onclick: () => actions.open(run.id)
    },
    h('span', { class: `nbp-run-icon nbp-state-${run.state}`, 'aria-hidden': 'true', text: ICONS[run.state] ?? '○' }),
    h(
      'span',
      { class: 'nbp-run-text' },
      h(
        'span',
        { class: 'nbp-run-line' },
        h('span', { class: 'nbp-run-name', title: run.name || run.id, text: shortRunName(run) }),
        h('span', { class: 'nbp-run-duration', 'data-started': active && run.started_at ? String(run.started_at) : undefined, text: formatDuration(duration) })
      ),
      h(
        'span',
        { class: 'nbp-run-meta' },
        h('span', { class: `nbp-run-state nbp-state-${run.state}`, text: run.state }),
        ` · ${runSource(run)}${steps ? ` · ${steps} step${steps === 1 ? '' : 's'}` : ''} · ${formatAgo(run.created_at, now)}`
      ),
      params ? h('span', { class: 'nbp-run-params', title: formatParams(run.params, 400, run.float_params), text: params }) : null
    )
  );
  return h(
    'li',
    { class: `nbp-run${open ? ' nbp-run-current' : ''}`, 'data-run': run.id, 'data-state': run.state },
    main,
    h('span', { class: 'nbp-run-actions' }, ...buttons)
  );
}

/** Update the shown duration of every running run in `host` to now (call once a second). */
export function tickDurations(host: HTMLElement, now = Date.now() / 1000): void {
  host.querySelectorAll<HTMLElement>('[data-started]').forEach(el => {
    el.textContent = formatDuration(Math.max(0, now - Number(el.dataset.started)));
  });
}

/**
 * A run's name for a narrow list: generated names ("digits 2026-11-30 19:02:03") all start the
 * same, so today's runs show "digits · 19:02:03" and older ones "digits · 11-29 19:02"; names the
 * user chose are kept as they are.
 */
export function shortRunName(run: Pick<RunSummary, 'name' | 'pipeline' | 'id'>, today = new Date()): string {
  // A re-run is named after its run with what it re-ran: "digits 2026-11-30 19:02:03 (re-run from train)".
  const m = /^(.*) (\d{4})-(\d{2})-(\d{2}) (\d{2}:\d{2}):(\d{2})( \(.+\))?$/.exec(run.name || '');
  if (!m) {
    return run.name || run.pipeline || run.id;
  }
  const [, pipeline, y, mo, d, hm, s, rerun = ''] = m;
  const sameDay = Number(y) === today.getFullYear() && Number(mo) === today.getMonth() + 1 && Number(d) === today.getDate();
  return `${sameDay ? `${pipeline} · ${hm}:${s}` : `${pipeline} · ${mo}-${d} ${hm}`}${rerun}`;
}
