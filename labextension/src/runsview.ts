/**
 * The Runs page in JupyterLab's main area: every run in the runner's database, newest first,
 * live (the runner's event stream; no refresh button), with filters (experiment, notebook,
 * pipeline, state), search, paging, and ticks to compare 2–10 runs. A row opens the run page.
 *
 * Non-goals: state (runsmodel.ts holds it), fetching (request.ts), the sidebar's short list.
 */

import type { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { RunsStorageBar } from './archive';
import type { RunStorage } from './archivemodel';
import type { FacetValue, RunFilters } from './dashboard_api';
import { button, h } from './dom';
import { RUN_FINAL, RUN_STATES, RunSummary, STEP_STATES } from './events';
import { formatAgo, formatDuration, formatParams, formatWhen, runNotebook, runSource } from './format';
import { nbpipeIcon } from './icons';
import { liveDuration, MAX_COMPARE, pageLabel, RunListModel, RunListState } from './runsmodel';

export interface RunsPageActions {
  openRun(id: string): void;
  compare(ids: string[]): void;
}

const ICONS: Record<string, string> = { queued: '○', running: '●', succeeded: '✓', failed: '✗', cancelled: '⊘' };

export class RunsPage extends Widget {
  private readonly search = h('input', {
    type: 'search',
    class: 'jp-mod-styled nbp-input nbp-runs-search',
    'aria-label': 'Search runs by name, id, pipeline, experiment or notebook'
  });
  private readonly selects: Record<'experiment' | 'notebook' | 'pipeline' | 'state', HTMLSelectElement>;
  private readonly liveDot = h('span', { class: 'nbp-live', title: 'Following the runner’s events' });
  private readonly status = h('span', { class: 'nbp-runs-status', 'aria-live': 'polite' });
  private readonly compareButton: HTMLButtonElement;
  private readonly tableBody = h('tbody');
  private readonly pager = h('div', { class: 'nbp-pager' });
  private readonly message = h('div', { class: 'nbp-runs-message' });
  private readonly disconnect: Array<() => void> = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  private searchTimer: ReturnType<typeof setTimeout> | null = null;
  private facetKey = '';
  private readonly storageBar: RunsStorageBar | null; // Active | Archived, Archive/Restore/Delete

  constructor(readonly model: RunListModel, private readonly actions: RunsPageActions, storage?: RunStorage) {
    super();
    this.storageBar = storage ? new RunsStorageBar(model, storage) : null;
    this.id = 'nbpipe-runs';
    this.addClass('nbp-runs-page');
    this.title.label = 'Runs';
    this.title.caption = 'nbpipe: every run, live';
    this.title.icon = nbpipeIcon;
    this.title.closable = true;
    this.search.placeholder = 'Search runs…';
    this.search.addEventListener('input', () => {
      if (this.searchTimer) {
        clearTimeout(this.searchTimer);
      }
      this.searchTimer = setTimeout(() => void this.model.setFilter('q', this.search.value.trim()), 250);
    });
    const select = (key: keyof RunFilters, label: string): HTMLSelectElement => {
      const el = h('select', { class: 'jp-mod-styled nbp-select', 'aria-label': label, 'data-filter': key });
      el.addEventListener('change', () => void this.model.setFilter(key, el.value));
      return el;
    };
    this.selects = {
      experiment: select('experiment', 'Experiment'),
      notebook: select('notebook', 'Notebook'),
      pipeline: select('pipeline', 'Pipeline'),
      state: select('state', 'State')
    };
    this.compareButton = button('Compare', () => this.actions.compare(this.model.state.selected), {
      class: 'nbp-compare-button',
      accept: true,
      title: `Tick 2 to ${MAX_COMPARE} runs to compare their parameters and metrics`
    });
    const head = h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', { class: 'nbp-col-pick', 'aria-label': 'Compare' }),
        h('th', { text: 'Run' }),
        h('th', { text: 'State' }),
        h('th', { text: 'Steps' }),
        h('th', { text: 'Source' }),
        h('th', { text: 'Experiment' }),
        h('th', { text: 'Parameters' }),
        h('th', { class: 'nbp-num', text: 'Started' }),
        h('th', { class: 'nbp-num', text: 'Duration' })
      )
    );
    this.node.append(
      h(
        'header',
        { class: 'nbp-runs-head' },
        h('h2', { class: 'nbp-page-title' }, 'Runs ', this.liveDot),
        this.storageBar?.tabs,
        this.search,
        this.selects.experiment,
        this.selects.notebook,
        this.selects.pipeline,
        this.selects.state,
        button('Clear', () => this.clear(), { class: 'nbp-small', title: 'Clear filters and search' }),
        h('span', { class: 'nbp-spacer' }),
        this.status,
        this.storageBar?.actions,
        this.compareButton
      ),
      this.message,
      ...(this.storageBar ? [this.storageBar.message] : []),
      h('div', { class: 'nbp-runs-scroll' }, h('table', { class: 'nbp-runs-table', 'aria-label': 'Runs, newest first' }, head, this.tableBody)),
      this.pager
    );
    this.disconnect.push(model.changed.connect(state => this.render(state)));
    this.render(model.state);
    this.timer = setInterval(() => this.tick(), 1000);
  }

  private clear(): void {
    this.search.value = '';
    void this.model.clearFilters();
  }

  private render(state: RunListState): void {
    this.liveDot.classList.toggle('nbp-live-on', state.live);
    this.liveDot.title = state.live ? 'Live: following the runner’s events' : 'Reconnecting to the runner…';
    this.renderFilters(state);
    this.storageBar?.render(state);
    const n = state.selected.length;
    this.compareButton.disabled = n < 2;
    this.compareButton.textContent = n ? `Compare ${n}` : 'Compare';
    this.status.textContent = state.loading ? 'Loading…' : state.loadMs !== null ? `${pageLabel(state.offset, state.runs.length, state.total)}` : '';
    this.message.replaceChildren(
      ...(state.error
        ? [h('div', { class: 'nbp-error', role: 'alert' }, h('div', { class: 'nbp-error-message', text: state.error.message }), state.error.hint ? h('div', { class: 'nbp-error-hint', text: state.error.hint }) : null)]
        : [])
    );
    const now = Date.now() / 1000;
    if (!state.runs.length && !state.loading) {
      const filtered = Object.values(state.filters).some(Boolean);
      this.tableBody.replaceChildren(
        h('tr', {}, h('td', { class: 'nbp-empty', text: filtered ? 'No run matches these filters.' : state.archived ? 'No archived runs.' : 'No runs yet. Run a pipeline from a notebook to see it here.' }))
      );
      (this.tableBody.firstChild?.firstChild as HTMLElement).setAttribute('colspan', '9');
    } else {
      this.tableBody.replaceChildren(...state.runs.map(r => this.row(r, state.selected.includes(r.id), now)));
    }
    const prev = button('‹ Newer', () => void this.model.previousPage(), { class: 'nbp-small', title: 'Newer runs' });
    const next = button('Older ›', () => void this.model.nextPage(), { class: 'nbp-small', title: 'Older runs' });
    prev.disabled = state.offset === 0;
    next.disabled = state.offset + state.runs.length >= state.total;
    this.pager.replaceChildren(prev, h('span', { class: 'nbp-page-label', text: pageLabel(state.offset, state.runs.length, state.total) }), next);
  }

  private renderFilters(state: RunListState): void {
    const f = state.facets;
    const key = JSON.stringify([f, state.filters]);
    if (key === this.facetKey) {
      return;
    }
    this.facetKey = key;
    const fill = (el: HTMLSelectElement, all: string, values: FacetValue[], current: string, show: (v: string) => string = v => v): void => {
      const options = [h('option', { text: all })];
      options[0].value = '';
      const seen = values.some(v => v.value === current);
      for (const v of seen || !current ? values : [...values, { value: current, runs: 0 }]) {
        const o = h('option', { text: `${show(v.value)} (${v.runs.toLocaleString('en-US')})` });
        o.value = v.value;
        options.push(o);
      }
      el.replaceChildren(...options);
      el.value = current;
    };
    fill(this.selects.experiment, 'All experiments', f?.experiments ?? [], state.filters.experiment);
    fill(this.selects.notebook, 'All notebooks', f?.notebooks ?? [], state.filters.notebook, v => v.split('/').pop() ?? v);
    fill(this.selects.pipeline, 'All pipelines', f?.pipelines ?? [], state.filters.pipeline);
    const states = RUN_STATES.map(s => ({ value: s, runs: f?.states?.[s] ?? 0 }));
    fill(this.selects.state, 'Any state', states, state.filters.state);
  }

  private row(run: RunSummary, picked: boolean, now: number): HTMLElement {
    const pick = h('input', { type: 'checkbox', class: 'nbp-pick', 'aria-label': `Compare ${run.name || run.id}`, title: 'Tick to compare or archive' });
    pick.checked = picked;
    pick.addEventListener('click', ev => ev.stopPropagation());
    pick.addEventListener('change', () => this.model.toggleSelected(run.id));
    const open = h('button', { type: 'button', class: 'nbp-run-link', title: `Open run ${run.id}`, onclick: () => this.actions.openRun(run.id) },
      h('span', { class: 'nbp-run-title', text: run.name || run.pipeline || run.id }),
      h('span', { class: 'nbp-run-id', text: run.id }));
    const active = !RUN_FINAL.has(run.state);
    const tr = h(
      'tr',
      { class: `nbp-runs-row${picked ? ' nbp-picked' : ''}`, 'data-run': run.id, 'data-state': run.state },
      h('td', { class: 'nbp-col-pick' }, pick),
      h('td', { class: 'nbp-col-name' }, open),
      h('td', {}, h('span', { class: `nbp-state-badge nbp-state-${run.state}` }, h('span', { 'aria-hidden': 'true', text: ICONS[run.state] ?? '○' }), ` ${run.state}`)),
      h('td', { class: 'nbp-col-steps' }, stepBar(run)),
      h('td', { class: 'nbp-col-source', title: runNotebook(run) ?? run.pipeline, text: runSource(run) }),
      h('td', { text: run.experiment }),
      h('td', { class: 'nbp-col-params', title: formatParams(run.params, 400, run.float_params), text: formatParams(run.params, 16, run.float_params) }),
      h('td', { class: 'nbp-num', title: formatWhen(run.created_at), text: formatAgo(run.created_at, now) }),
      h('td', { class: `nbp-num nbp-duration${active ? ' nbp-ticking' : ''}`, 'data-started': active && run.started_at ? String(run.started_at) : undefined, text: formatDuration(liveDuration(run, now)) || (run.state === 'queued' ? 'queued' : '') })
    );
    tr.addEventListener('dblclick', () => this.actions.openRun(run.id));
    return tr;
  }

  /** Live durations of running runs (once a second, text only). */
  private tick(): void {
    const now = Date.now() / 1000;
    this.node.querySelectorAll<HTMLElement>('.nbp-ticking[data-started]').forEach(el => {
      el.textContent = formatDuration(Math.max(0, now - Number(el.dataset.started)));
    });
  }

  protected onAfterAttach(): void {
    void this.model.start();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.disconnect.forEach(fn => fn());
    this.storageBar?.dispose();
    if (this.timer) {
      clearInterval(this.timer);
    }
    if (this.searchTimer) {
      clearTimeout(this.searchTimer);
    }
    this.model.dispose();
    super.dispose();
  }

  /** Closing the tab ends the page (its streams and timers); reopening builds a fresh one. */
  protected onCloseRequest(msg: Message): void {
    super.onCloseRequest(msg);
    this.dispose();
  }
}

/** A thin bar of step states (succeeded, cached, running, failed…) with the counts as its title. */
export function stepBar(run: Pick<RunSummary, 'step_counts'>): HTMLElement {
  const counts = run.step_counts ?? {};
  const total = Object.values(counts).reduce((a, b) => a + (b ?? 0), 0);
  const bar = h('span', {
    class: 'nbp-stepbar',
    title: STEP_STATES.filter(s => counts[s]).map(s => `${counts[s]} ${s}`).join(', ') || 'no steps yet'
  });
  for (const s of STEP_STATES) {
    const n = counts[s] ?? 0;
    if (n && total) {
      const seg = h('span', { class: `nbp-seg nbp-state-${s}` });
      seg.style.flexGrow = String(n);
      bar.append(seg);
    }
  }
  return h('span', { class: 'nbp-steps-cell' }, bar, h('span', { class: 'nbp-steps-count', text: total ? String(total) : '' }));
}
