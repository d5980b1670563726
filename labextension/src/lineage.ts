/**
 * The lineage of an artifact in JupyterLab's main area: what the step that computed it was fed
 * (parameters, constants, upstream artifacts), which step and run computed it and with which
 * code, every copy of it (cache reuses in later runs), and every step in any run that consumed
 * it — as a left-to-right graph. Clicking an artifact re-centres the page on it (Back returns);
 * clicking a run opens its run page.
 *
 * Non-goals: laying out arbitrary graphs (the four columns come from lineagemodel.ts).
 */

import type { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import type { DashboardApi, LineageArtifact } from './dashboard_api';
import { button, h } from './dom';
import { errorInfo, formatDuration, formatWhen } from './format';
import { nbpipeIcon } from './icons';
import { LineageGraph, LineageLink, LineageNode, lineageGraph } from './lineagemodel';

export interface LineagePageActions {
  openRun(id: string): void;
  /** The page now shows another artifact (the layout restorer saves it). */
  navigated?(link: LineageLink): void;
}

const COLUMNS = ['Inputs', 'Computed by', 'Artifact and its copies', 'Used by'];
const SVG = 'http://www.w3.org/2000/svg';

function bytes(n: number | null | undefined): string {
  if (typeof n !== 'number') {
    return '';
  }
  const units = ['B', 'KB', 'MB', 'GB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return u ? `${v.toFixed(1)} ${units[u]}` : `${v} B`;
}

export class LineagePage extends Widget {
  private history: LineageLink[] = [];
  private readonly body = h('div', { class: 'nbp-lineage-body' });
  private graphHost: HTMLElement | null = null;
  private svg: SVGSVGElement | null = null;
  private graph: LineageGraph | null = null;
  private frame = 0;

  constructor(
    private start: LineageLink,
    private readonly api: DashboardApi,
    private readonly actions: LineagePageActions
  ) {
    super();
    this.id = `nbpipe-lineage-${start.run}-${start.step}-${start.output}`;
    this.addClass('nbp-lineage-page');
    this.title.icon = nbpipeIcon;
    this.title.closable = true;
    this.node.append(this.body);
    void this.showArtifact(start, false, false);
  }

  /** The artifact shown now (what the layout restorer saves). */
  get current(): LineageLink {
    return this.start;
  }

  async showArtifact(link: LineageLink, push = true, notify = true): Promise<void> {
    if (push) {
      this.history.push(this.start);
    }
    this.start = link;
    if (notify) {
      this.actions.navigated?.(link);
    }
    this.title.label = `Lineage · ${link.step}.${link.output}`;
    this.title.caption = `Lineage of ${link.step}.${link.output} in run ${link.run}`;
    this.body.replaceChildren(h('p', { class: 'nbp-muted', text: 'Loading lineage…' }));
    try {
      const body = await this.api.lineage(link.run, link.step, link.output);
      const art = body.artifacts.find(a => a.output === link.output) ?? body.artifacts[0];
      if (!art) {
        throw new Error(`Step ${link.step} of run ${link.run} has no outputs`);
      }
      this.render(art);
    } catch (err) {
      const info = errorInfo(err);
      this.body.replaceChildren(
        this.toolbar(null),
        h('div', { class: 'nbp-error', role: 'alert' }, h('div', { class: 'nbp-error-message', text: info.message }), info.hint ? h('div', { class: 'nbp-error-hint', text: info.hint }) : null)
      );
    }
  }

  private back(): void {
    const prev = this.history.pop();
    if (prev) {
      void this.showArtifact(prev, false);
    }
  }

  private toolbar(art: LineageArtifact | null): HTMLElement {
    const back = button('‹ Back', () => this.back(), { class: 'nbp-small', title: 'The artifact shown before' });
    back.disabled = !this.history.length;
    return h(
      'header',
      { class: 'nbp-lineage-head' },
      back,
      h('h2', { class: 'nbp-page-title' }, 'Lineage of ', h('code', { text: `${this.start.step}.${this.start.output}` })),
      art ? h('span', { class: 'nbp-muted', text: [art.kind, art.format, bytes(art.size), `sha256 ${art.digest.slice(0, 12)}`].filter(Boolean).join(' · ') }) : null,
      h('span', { class: 'nbp-spacer' }),
      art ? button('Open run', () => this.actions.openRun(art.run), { class: 'nbp-small', title: `Open run ${art.run}` }) : null
    );
  }

  private render(art: LineageArtifact): void {
    const graph = lineageGraph(art);
    this.graph = graph;
    const p = art.producer;
    const facts = h(
      'dl',
      { class: 'nbp-lineage-facts' },
      h('dt', { text: 'Computed by' }),
      h('dd', {}, h('strong', { text: p.step }), ` in `, this.runLink(art, p.run), p.run !== art.run ? h('span', { class: 'nbp-tag nbp-tag-cache', text: `run ${art.run} reused it from the cache` }) : null),
      h('dt', { text: 'Code' }),
      h('dd', {}, 'component ', h('code', { text: p.component }), ' · ', h('code', { class: 'nbp-digest', title: `sha256 ${p.code_digest}`, text: p.code_digest.slice(0, 12) || '?' })),
      h('dt', { text: 'When' }),
      h('dd', { text: [p.finished_at ? formatWhen(p.finished_at) : '', p.duration !== null && p.duration < 0.05 ? 'under 0.1 s' : formatDuration(p.duration)].filter(Boolean).join(' · took ') }),
      h('dt', { text: 'Used by' }),
      h('dd', { text: `${art.consumers.length} step${art.consumers.length === 1 ? '' : 's'} in ${new Set(art.consumers.map(c => c.run)).size} run${new Set(art.consumers.map(c => c.run)).size === 1 ? '' : 's'}` })
    );
    const host = h('div', { class: 'nbp-lineage-graph' });
    this.svg = document.createElementNS(SVG, 'svg');
    this.svg.setAttribute('class', 'nbp-lineage-edges');
    this.svg.setAttribute('aria-hidden', 'true');
    host.append(this.svg);
    graph.columns.forEach((nodes, c) => {
      host.append(
        h('div', { class: 'nbp-lineage-col', 'data-column': String(c) },
          h('div', { class: 'nbp-lineage-col-title', text: COLUMNS[c] }),
          ...(nodes.length ? nodes.map(n => this.node_(art, n)) : [h('div', { class: 'nbp-lineage-none', text: c === 0 ? 'no inputs' : c === 3 ? 'not used yet' : '' })]))
      );
    });
    this.graphHost = host;
    this.body.replaceChildren(this.toolbar(art), facts, host);
    this.scheduleEdges();
  }

  private runLink(art: LineageArtifact, run: string): HTMLElement {
    const info = art.runs[run];
    return h('button', { type: 'button', class: 'nbp-run-chip', title: `Open run ${run}`, onclick: () => this.actions.openRun(run) },
      info?.name && info.name !== run ? `${info.name} · ${run}` : `run ${run}`);
  }

  private node_(art: LineageArtifact, n: LineageNode): HTMLElement {
    const classes = ['nbp-lnode', `nbp-lnode-${n.kind}`];
    if (n.focus) {
      classes.push('nbp-lnode-focus');
    }
    if (n.cached) {
      classes.push('nbp-lnode-cached');
    }
    const title = n.link && !n.focus
      ? h('button', { type: 'button', class: 'nbp-lnode-title nbp-link-button', title: `Show the lineage of ${n.link.step}.${n.link.output} (run ${n.link.run})`, onclick: () => void this.showArtifact(n.link!) }, n.title)
      : h('span', { class: 'nbp-lnode-title', text: n.title });
    return h(
      'div',
      { class: classes.join(' '), 'data-node': n.id, 'data-state': n.state || undefined },
      h('div', { class: 'nbp-lnode-top' }, n.state ? h('span', { class: `nbp-dot-state nbp-state-${n.state}`, title: n.state }) : null, title),
      n.detail ? h('div', { class: 'nbp-lnode-detail', text: n.detail }) : null,
      n.run ? h('div', { class: 'nbp-lnode-run' }, this.runLink(art, n.run)) : null
    );
  }

  private scheduleEdges(): void {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => this.drawEdges());
  }

  /** Curves between the cards, measured after layout (redrawn on resize). */
  private drawEdges(): void {
    const host = this.graphHost;
    const svg = this.svg;
    if (!host || !svg || !this.graph || !host.isConnected) {
      return;
    }
    const box = host.getBoundingClientRect();
    svg.setAttribute('width', String(host.scrollWidth));
    svg.setAttribute('height', String(host.scrollHeight));
    const at = (id: string): DOMRect | null => host.querySelector<HTMLElement>(`[data-node="${CSS.escape(id)}"]`)?.getBoundingClientRect() ?? null;
    const paths: SVGElement[] = [];
    for (const e of this.graph.edges) {
      const a = at(e.from);
      const b = at(e.to);
      if (!a || !b) {
        continue;
      }
      const x1 = a.right - box.left + host.scrollLeft;
      const y1 = a.top + a.height / 2 - box.top + host.scrollTop;
      const x2 = b.left - box.left + host.scrollLeft;
      const y2 = b.top + b.height / 2 - box.top + host.scrollTop;
      const dx = Math.max(24, (x2 - x1) / 2);
      const path = document.createElementNS(SVG, 'path');
      path.setAttribute('d', `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`);
      path.setAttribute('class', `nbp-ledge${e.cached ? ' nbp-ledge-cached' : ''}`);
      paths.push(path);
      if (e.label) {
        const label = document.createElementNS(SVG, 'text');
        label.setAttribute('x', String((x1 + x2) / 2));
        label.setAttribute('y', String((y1 + y2) / 2 - 4));
        label.setAttribute('class', 'nbp-ledge-label');
        label.textContent = e.label;
        paths.push(label);
      }
    }
    svg.replaceChildren(...paths);
  }

  protected onResize(): void {
    this.scheduleEdges();
  }

  protected onAfterShow(): void {
    this.scheduleEdges();
  }

  protected onAfterAttach(): void {
    this.scheduleEdges();
  }

  dispose(): void {
    cancelAnimationFrame(this.frame);
    super.dispose();
  }

  /** Closing the tab ends the page (its streams and timers); reopening builds a fresh one. */
  protected onCloseRequest(msg: Message): void {
    super.onCloseRequest(msg);
    this.dispose();
  }
}
