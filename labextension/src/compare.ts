/**
 * Compare runs in JupyterLab's main area (KFP's compare view): the runs' parameters side by side
 * with the differences highlighted, the metrics table with the best run per metric marked, and a
 * bar chart per metric across the runs. The data is `nbpipe compare`'s (nbpipe/comparison.py).
 *
 * Non-goals: computing metrics (the server does), state beyond the run ids (restoring needs only them).
 */

import type { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { bars, formatMetric, metricRows, paramRows } from './comparemodel';
import type { CompareTable, DashboardApi } from './dashboard_api';
import { button, h } from './dom';
import { errorInfo, formatDuration } from './format';
import { nbpipeIcon } from './icons';
import { shortRunName } from './runlist';

export interface ComparePageActions {
  openRun(id: string): void;
  openSideBySide(ids: string[]): void;
}

export class ComparePage extends Widget {
  private table: CompareTable | null = null;
  private onlyDiff = false;
  private readonly body = h('div', { class: 'nbp-compare-body' });

  constructor(readonly runIds: string[], private readonly api: DashboardApi, private readonly actions: ComparePageActions) {
    super();
    this.id = `nbpipe-compare-${runIds.join('-')}`.slice(0, 200);
    this.addClass('nbp-compare-page');
    this.title.label = `Compare ${runIds.length} runs`;
    this.title.caption = `nbpipe: compare runs ${runIds.join(', ')}`;
    this.title.icon = nbpipeIcon;
    this.title.closable = true;
    this.node.append(this.body);
    this.body.append(h('p', { class: 'nbp-muted', text: 'Loading runs…' }));
    void this.load();
  }

  async load(): Promise<void> {
    try {
      this.table = await this.api.compare(this.runIds);
      this.render();
    } catch (err) {
      const info = errorInfo(err);
      this.body.replaceChildren(
        h('div', { class: 'nbp-error', role: 'alert' }, h('div', { class: 'nbp-error-message', text: info.message }), info.hint ? h('div', { class: 'nbp-error-hint', text: info.hint }) : null)
      );
    }
  }

  private swatch(i: number): HTMLElement {
    return h('span', { class: `nbp-swatch nbp-run-color-${i % 10}`, 'aria-hidden': 'true' });
  }

  private runHeader(i: number): HTMLElement {
    const r = this.table!.runs[i];
    return h(
      'th',
      { class: 'nbp-compare-run' },
      h('button', { type: 'button', class: 'nbp-run-link', title: `Open run ${r.id}`, onclick: () => this.actions.openRun(r.id) },
        this.swatch(i), h('span', { class: 'nbp-run-title', text: r.name || r.id }), h('span', { class: 'nbp-run-id', text: r.id }))
    );
  }

  private render(): void {
    const t = this.table!;
    const params = paramRows(t);
    const metrics = metricRows(t);
    const shown = this.onlyDiff ? params.filter(p => p.differs) : params;
    const toggle = h('input', { type: 'checkbox', id: `${this.id}-diff`, class: 'nbp-only-diff' });
    toggle.checked = this.onlyDiff;
    toggle.addEventListener('change', () => {
      this.onlyDiff = toggle.checked;
      this.render();
    });
    const heads = t.runs.map((_, i) => this.runHeader(i));
    const summary = h(
      'table',
      { class: 'nbp-compare-table', 'aria-label': 'Runs' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Run' }), ...heads)),
      h(
        'tbody',
        {},
        h('tr', {}, h('th', { text: 'State' }), ...t.runs.map(r => h('td', {}, h('span', { class: `nbp-state-badge nbp-state-${r.state}`, text: r.state })))),
        h('tr', {}, h('th', { text: 'Pipeline' }), ...t.runs.map(r => h('td', { text: r.pipeline }))),
        h('tr', {}, h('th', { text: 'Experiment' }), ...t.runs.map(r => h('td', { text: r.experiment }))),
        h('tr', {}, h('th', { text: 'Duration' }), ...t.runs.map(r => h('td', { class: 'nbp-num', text: formatDuration(r.duration) || '—' })))
      )
    );
    const paramTable = h(
      'table',
      { class: 'nbp-compare-table nbp-compare-params', 'aria-label': 'Parameters' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Parameter' }), ...t.runs.map((_, i) => this.runHeader(i)))),
      h(
        'tbody',
        {},
        ...shown.map(p =>
          h('tr', { class: p.differs ? 'nbp-differs' : '', 'data-param': p.name },
            h('th', {}, p.differs ? h('span', { class: 'nbp-diff-mark', title: 'Differs between runs', text: '≠' }) : null, p.name),
            ...p.values.map(v => h('td', { class: 'nbp-mono', text: v || '—' })))
        ),
        shown.length ? null : h('tr', {}, h('td', { class: 'nbp-muted', text: params.length ? 'Every parameter is the same in these runs.' : 'These runs have no parameters.' }))
      )
    );
    const metricTable = h(
      'table',
      { class: 'nbp-compare-table nbp-compare-metrics', 'aria-label': 'Metrics' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Metric' }), ...t.runs.map((_, i) => this.runHeader(i)))),
      h(
        'tbody',
        {},
        ...metrics.map(m =>
          h('tr', { 'data-metric': m.name },
            h('th', { title: m.lowerIsBetter ? 'lower is better' : 'higher is better', text: m.name }),
            ...m.values.map((v, i) => h('td', { class: `nbp-num nbp-mono${i === m.best ? ' nbp-best' : ''}`, title: i === m.best ? 'best of these runs' : '', text: formatMetric(v) })))
        )
      )
    );
    const charts = h(
      'div',
      { class: 'nbp-charts' },
      ...metrics.map(m =>
        h('figure', { class: 'nbp-chart', 'data-metric': m.name },
          h('figcaption', {}, h('strong', { text: m.name }), h('span', { class: 'nbp-muted', text: m.lowerIsBetter ? ' · lower is better' : '' })),
          ...bars(m.values).map(b => {
            const fill = h('span', { class: `nbp-bar-fill nbp-run-color-${b.run % 10}` });
            fill.style.width = `${(b.fraction * 100).toFixed(1)}%`;
            const r = t.runs[b.run];
            return h('div', { class: `nbp-bar${b.run === m.best ? ' nbp-best' : ''}`, title: `${r.name || r.id}: ${formatMetric(b.value)}` },
              h('span', { class: 'nbp-bar-label', text: shortRunName(r) }), // runs of one pipeline differ by their time, not cut off
              h('span', { class: 'nbp-bar-track' }, fill),
              h('span', { class: 'nbp-bar-value nbp-mono', text: formatMetric(b.value) }));
          }))
      )
    );
    this.body.replaceChildren(
      h('header', { class: 'nbp-compare-head' },
        h('h2', { class: 'nbp-page-title', text: `Compare ${t.runs.length} runs` }),
        h('span', { class: 'nbp-spacer' }),
        button('Open side by side', () => this.actions.openSideBySide(t.runs.map(r => r.id)), { class: 'nbp-small', title: 'Open each run’s page, side by side' }),
        button('Refresh', () => void this.load(), { class: 'nbp-small', title: 'Load the runs again' })),
      summary,
      h('section', { class: 'nbp-compare-section' },
        h('div', { class: 'nbp-section-title' }, h('h3', { text: 'Parameters' }),
          h('span', { class: 'nbp-muted', text: `${t.differ.length} of ${t.params.length} differ` }),
          h('label', { class: 'nbp-check', for: toggle.id }, toggle, ' Only differences')),
        paramTable),
      h('section', { class: 'nbp-compare-section' },
        h('div', { class: 'nbp-section-title' }, h('h3', { text: 'Metrics' }), h('span', { class: 'nbp-muted', text: `${t.metrics.length} metrics` })),
        metrics.length ? metricTable : h('p', { class: 'nbp-muted', text: 'No numeric outputs or Metrics artifacts in these runs yet.' })),
      h('section', { class: 'nbp-compare-section', hidden: !metrics.length }, h('div', { class: 'nbp-section-title' }, h('h3', { text: 'Metric charts' })), charts)
    );
  }

  /** Closing the tab ends the page (its streams and timers); reopening builds a fresh one. */
  protected onCloseRequest(msg: Message): void {
    super.onCloseRequest(msg);
    this.dispose();
  }
}
