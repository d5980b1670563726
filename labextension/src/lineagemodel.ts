/**
 * The lineage graph of one artifact, without the DOM: four columns — the producer's inputs, the
 * step that computed it, every copy of the artifact (the produced one, cache reuses in later
 * runs, identical bytes computed elsewhere) and the steps that consumed each copy — and the edges
 * between them. Nodes that are artifacts of other steps carry a link to re-centre on them.
 *
 * Non-goals: drawing (lineage.ts), fetching.
 */

import type { LineageArtifact, LineageOccurrence } from './dashboard_api';
import type { JSONValue } from './events';

export interface LineageLink {
  run: string;
  step: string;
  output: string;
}

export interface LineageNode {
  id: string;
  column: 0 | 1 | 2 | 3;
  kind: 'parameter' | 'value' | 'input' | 'producer' | 'artifact' | 'consumer';
  title: string;
  detail: string;
  run: string | null;
  state: string;
  /** This node is the artifact the page is about. */
  focus: boolean;
  /** Re-centre the lineage on this artifact. */
  link: LineageLink | null;
  /** Through the cache (a reuse, or a consumer that was itself cached). */
  cached: boolean;
}

export interface LineageEdge {
  from: string;
  to: string;
  label: string;
  cached: boolean;
}

export interface LineageGraph {
  columns: LineageNode[][];
  edges: LineageEdge[];
  /** Runs in the graph, in order of appearance (for the legend and run links). */
  runs: string[];
}

const short = (digest: string | undefined): string => (digest ? digest.slice(0, 12) : '');

function text(value: JSONValue | undefined): string {
  const t = typeof value === 'string' ? value : JSON.stringify(value ?? null);
  return t.length > 40 ? `${t.slice(0, 39)}…` : t;
}

function runLabel(art: LineageArtifact, run: string): string {
  const name = art.runs[run]?.name;
  return name && name !== run ? `${name} · ${run}` : run;
}

function occurrenceId(o: Pick<LineageOccurrence, 'run' | 'step' | 'output'>): string {
  return `occ:${o.run}/${o.step}/${o.output}`;
}

export function lineageGraph(art: LineageArtifact): LineageGraph {
  const p = art.producer;
  const producerId = `step:${p.run}/${p.step}`;
  const inputs: LineageNode[] = p.inputs.map(inp => {
    const id = `in:${inp.name}`;
    if (inp.kind === 'artifact') {
      return {
        id,
        column: 0,
        kind: 'input',
        title: `${inp.step}.${inp.output}`,
        detail: [inp.format, short(inp.digest)].filter(Boolean).join(' · '),
        run: inp.run ?? null,
        state: inp.state ?? '',
        focus: false,
        link: inp.run && inp.step && inp.output ? { run: inp.run, step: inp.step, output: inp.output } : null,
        cached: inp.state === 'cached'
      };
    }
    if (inp.kind === 'parameter') {
      return { id, column: 0, kind: 'parameter', title: `${inp.parameter} = ${text(inp.value)}`, detail: 'parameter',
        run: null, state: '', focus: false, link: null, cached: false };
    }
    if (inp.kind === 'collected') {
      return { id, column: 0, kind: 'input', title: `every ${inp.step}.${inp.output}`, detail: 'collected from a loop',
        run: inp.run ?? null, state: '', focus: false, link: null, cached: false };
    }
    return { id, column: 0, kind: 'value', title: `${inp.name} = ${text(inp.value)}`, detail: 'constant',
      run: null, state: '', focus: false, link: null, cached: false };
  });
  const producer: LineageNode = {
    id: producerId,
    column: 1,
    kind: 'producer',
    title: p.step,
    detail: `component ${p.component} · code ${short(p.code_digest) || '?'}`,
    run: p.run,
    state: p.state,
    focus: false,
    link: null,
    cached: false
  };
  const order = { produced: 0, cached: 1, 'same content': 2 } as const;
  const occurrences = [...art.occurrences].sort((a, b) => order[a.how] - order[b.how] || (a.at ?? 0) - (b.at ?? 0));
  const copies: LineageNode[] = occurrences.map(o => ({
    id: occurrenceId(o),
    column: 2,
    kind: 'artifact',
    title: `${o.step}.${o.output}`,
    detail: o.how === 'produced' ? `${art.format || art.kind} · ${short(art.digest)}` : o.how === 'cached' ? 'reused from the cache' : 'same bytes, computed independently',
    run: o.run,
    state: o.state,
    focus: o.run === art.run && o.step === art.step && o.output === art.output,
    link: { run: o.run, step: o.step, output: o.output },
    cached: o.how === 'cached'
  }));
  const consumers: LineageNode[] = art.consumers.map(c => ({
    id: `use:${c.run}/${c.step}/${c.input}`,
    column: 3,
    kind: 'consumer',
    title: c.step,
    detail: `input ${c.input}${c.cached ? ' · cached' : ''}`,
    run: c.run,
    state: c.state,
    focus: false,
    link: Object.keys(c.outputs).length ? { run: c.run, step: c.step, output: Object.keys(c.outputs)[0] } : null,
    cached: c.cached
  }));
  const edges: LineageEdge[] = [
    ...inputs.map(n => ({ from: n.id, to: producerId, label: p.inputs.find(i => `in:${i.name}` === n.id)?.name ?? '', cached: false })),
    ...copies.map(n => ({ from: producerId, to: n.id, label: n.cached ? 'cache' : '', cached: n.cached })),
    ...art.consumers.map(c => ({
      from: occurrenceId({ run: c.run, step: c.from_step, output: c.from_output }),
      to: `use:${c.run}/${c.step}/${c.input}`,
      label: c.input,
      cached: c.cached
    }))
  ].filter(e => e.from !== e.to);
  const runs: string[] = [];
  for (const n of [producer, ...inputs, ...copies, ...consumers]) {
    if (n.run && !runs.includes(n.run)) {
      runs.push(n.run);
    }
  }
  return { columns: [inputs, [producer], copies, consumers], edges, runs };
}

export { runLabel };
