/**
 * The dashboard's DOM-free models against an in-memory server extension (only the HTTP boundary
 * is faked): the live run list (paging, filters, events folded in, debounced reloads, reconnect),
 * following one run, the compare rows and bars, and the lineage graph.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { bars, formatMetric, metricRows, paramRows } from '../src/comparemodel';
import type { CompareTable, DashboardApi, Lineage, LineageArtifact, RunFilters, RunPage } from '../src/dashboard_api';
import type { RunEvent, RunSnapshot, RunSummary } from '../src/events';
import { RunFollower } from '../src/follow';
import { lineageGraph } from '../src/lineagemodel';
import { shortRunName } from '../src/runlist';
import { Timeline } from '../src/timeline';
import { liveDuration, MAX_COMPARE, pageLabel, RunListModel } from '../src/runsmodel';

function summary(i: number, state: RunSummary['state'] = 'succeeded'): RunSummary {
  return {
    id: `r${i}`, name: `run ${i}`, pipeline: i % 2 ? 'odd' : 'even', experiment: 'Default', state, reason: '',
    params: { i }, labels: {}, created_at: 1000 + i, started_at: 1000 + i, finished_at: state === 'running' ? null : 1010 + i,
    duration: state === 'running' ? null : 10, step_counts: { pending: 2 }
  };
}

const tick = (ms = 0): Promise<void> => new Promise(resolve => setTimeout(resolve, ms));

/** 120 runs in the "database"; events are pushed by the test through `push`. */
class FakeDashboard implements DashboardApi {
  all: RunSummary[] = Array.from({ length: 120 }, (_, i) => summary(119 - i));
  pages: Array<{ filters: RunFilters; offset: number; limit: number }> = [];
  lastEventId = 40;
  streams = 0;
  failNextStream = false;
  private sink: ((e: RunEvent) => void) | null = null;
  private release: (() => void) | null = null;

  async runPage(filters: RunFilters, offset: number, limit: number, facets: boolean): Promise<RunPage> {
    this.pages.push({ filters, offset, limit });
    const match = this.all.filter(r => (!filters.pipeline || r.pipeline === filters.pipeline) && (!filters.q || r.name.includes(filters.q)));
    return {
      runs: match.slice(offset, offset + limit), total: match.length, limit, offset, last_event_id: this.lastEventId,
      facets: facets ? { experiments: [{ value: 'Default', runs: match.length }], pipelines: [], notebooks: [], states: {} } : undefined
    };
  }

  allEvents(after: number, onEvent: (e: RunEvent) => void, signal: AbortSignal): Promise<number> {
    this.streams += 1;
    if (this.failNextStream) {
      this.failNextStream = false;
      return Promise.reject(new Error('network down'));
    }
    assert.equal(after, this.lastEventId, 'the stream starts right after the page it came with');
    this.sink = onEvent;
    return new Promise(resolve => {
      this.release = () => resolve(this.lastEventId);
      signal.addEventListener('abort', () => resolve(this.lastEventId));
    });
  }

  push(e: Record<string, unknown> & { type: RunEvent['type']; run_id: string }): void {
    this.lastEventId += 1;
    this.sink?.({ ...e, id: this.lastEventId } as RunEvent);
  }

  endStream(): void {
    this.release?.();
  }

  async run(id: string): Promise<RunSnapshot> {
    throw new Error(`not here: ${id}`);
  }
  async compare(): Promise<CompareTable> {
    throw new Error('unused');
  }
  async lineage(): Promise<Lineage> {
    throw new Error('unused');
  }
}

test('pages, filters and the page label', async () => {
  const api = new FakeDashboard();
  const model = new RunListModel(api, { debounceMs: 5 });
  await model.load(true);
  assert.equal(model.state.runs.length, 50);
  assert.equal(model.state.total, 120);
  assert.ok(model.state.facets);
  await model.nextPage();
  await model.nextPage();
  assert.equal(model.state.offset, 100);
  assert.equal(model.state.runs.length, 20);
  await model.nextPage(); // no page after the last
  assert.equal(model.state.offset, 100);
  assert.equal(pageLabel(model.state.offset, model.state.runs.length, model.state.total), '101–120 of 120');
  await model.setFilter('pipeline', 'odd');
  assert.equal(model.state.offset, 0, 'a new filter starts at the first page');
  assert.equal(model.state.total, 60);
  assert.ok(model.state.runs.every(r => r.pipeline === 'odd'));
  await model.clearFilters();
  assert.equal(model.state.total, 120);
  assert.equal(pageLabel(0, 0, 0), 'No runs');
  assert.equal(pageLabel(9950, 50, 10000), '9,951–10,000 of 10,000');
  model.dispose();
});

test('a slow older page never overwrites a newer one', async () => {
  const api = new FakeDashboard();
  const original = api.runPage.bind(api);
  let slow = true;
  api.runPage = async (...args) => {
    const page = await original(...args);
    if (slow) {
      slow = false;
      await tick(30);
    }
    return page;
  };
  const model = new RunListModel(api);
  const first = model.load();
  await model.setFilter('q', 'run 11');
  await first;
  assert.deepEqual(model.state.runs.map(r => r.id).sort(), ['r11', 'r110', 'r111', 'r112', 'r113', 'r114', 'r115', 'r116', 'r117', 'r118', 'r119']);
  model.dispose();
});

test('events update states and step counts in place and reload the page on new and finished runs', async () => {
  const api = new FakeDashboard();
  api.all[0] = summary(119, 'queued');
  const model = new RunListModel(api, { debounceMs: 5 });
  await model.start();
  assert.equal(api.streams, 1);
  assert.equal(model.state.live, true);
  const loads = api.pages.length;
  api.push({ type: 'RunStarted', run_id: 'r119', ts: 5000 });
  assert.equal(model.state.runs[0].state, 'running');
  assert.equal(model.state.runs[0].started_at, 1119, 'keeps the known start');
  api.push({ type: 'StepStarted', run_id: 'r119', ts: 5001, step: 'a', attempt: 1, max_attempts: 1 });
  assert.deepEqual(model.state.runs[0].step_counts, { pending: 1, running: 1 });
  api.push({ type: 'StepFinished', run_id: 'r119', ts: 5002, step: 'a', state: 'succeeded', attempt: 1, duration: 1, reason: '', traceback: '' });
  api.push({ type: 'StepFinished', run_id: 'r119', ts: 5002, step: 'b', state: 'cached', attempt: 0, duration: 0, reason: '', traceback: '' });
  assert.deepEqual(model.state.runs[0].step_counts, { pending: 0, running: 0, succeeded: 1, cached: 1 });
  assert.equal(api.pages.length, loads, 'step events alone never reload');
  api.push({ type: 'RunFinished', run_id: 'r119', ts: 5003, state: 'succeeded', reason: '', duration: 3 });
  assert.equal(model.state.runs[0].state, 'succeeded');
  assert.equal(model.state.runs[0].duration, 3);
  // a new run: one reload for a burst of events
  api.all.unshift(summary(120, 'queued'));
  api.push({ type: 'RunCreated', run_id: 'r120', ts: 5004, name: 'run 120', pipeline: 'even', experiment: 'Default', params: {}, graph: {} });
  api.push({ type: 'RunCreated', run_id: 'r121', ts: 5004, name: 'x', pipeline: 'even', experiment: 'Default', params: {}, graph: {} });
  await tick(30);
  assert.equal(api.pages.length, loads + 1, 'RunFinished + two RunCreated within the debounce: one reload');
  assert.equal(model.state.runs[0].id, 'r120');
  model.dispose();
  assert.equal(model.state.live, true);
});

test('a dropped stream reconnects and catches up', async () => {
  const api = new FakeDashboard();
  const model = new RunListModel(api, { debounceMs: 5, retryDelays: [5] });
  await model.start();
  const loads = api.pages.length;
  api.failNextStream = true;
  api.endStream(); // the stream ends; the next one fails once, then a catch-up reload and a new stream
  for (let i = 0; i < 50 && api.streams < 3; i++) {
    await tick(5);
  }
  assert.equal(api.streams, 3);
  assert.ok(api.pages.length > loads, 'reloaded to catch up on missed events');
  model.dispose();
});

test('compare selection keeps at most ten runs, and durations of running runs are live', () => {
  const model = new RunListModel(new FakeDashboard());
  for (let i = 0; i < 12; i++) {
    model.toggleSelected(`r${i}`);
  }
  assert.equal(model.state.selected.length, MAX_COMPARE);
  assert.deepEqual(model.state.selected.slice(0, 2), ['r2', 'r3']);
  model.toggleSelected('r5');
  assert.ok(!model.state.selected.includes('r5'));
  model.clearSelection();
  assert.deepEqual(model.state.selected, []);
  assert.equal(liveDuration({ state: 'running', started_at: 100, duration: null }, 107.5), 7.5);
  assert.equal(liveDuration({ state: 'succeeded', started_at: 100, duration: 3 }, 107.5), 3);
  assert.equal(liveDuration({ state: 'queued', started_at: null, duration: null }, 107.5), null);
});

test('RunFollower: snapshot, events until RunFinished, resume after a drop', async () => {
  const snap = { id: 'r1', state: 'running', last_event_id: 3, steps: [] } as unknown as RunSnapshot;
  const calls: number[] = [];
  let n = 0;
  const api = {
    run: async () => snap,
    events: async (_id: string, after: number, onEvent: (e: RunEvent) => void) => {
      calls.push(after);
      n += 1;
      if (n === 1) {
        onEvent({ type: 'RunStarted', run_id: 'r1', ts: 1, id: 4 });
        throw new Error('dropped');
      }
      onEvent({ type: 'RunStarted', run_id: 'other', ts: 1, id: 5 }); // not this run: ignored
      onEvent({ type: 'RunFinished', run_id: 'r1', ts: 2, id: 6, state: 'failed', reason: 'x', duration: 1 });
      return 6;
    }
  };
  const follower = new RunFollower(api, 'r1', [1, 1]);
  const seen: string[] = [];
  follower.snapshot.connect(s => seen.push(`snap:${s.id}`));
  follower.event.connect(e => seen.push(e.type));
  await follower.start();
  assert.deepEqual(calls, [3, 4], 'resumed after the last event seen');
  assert.deepEqual(seen, ['snap:r1', 'RunStarted', 'RunFinished']);
  assert.equal(follower.state, 'failed');

  const errors: string[] = [];
  const broken = new RunFollower({ run: async () => Promise.reject(new Error('[nbpipe] No run r9')), events: api.events }, 'r9');
  broken.error.connect(info => errors.push(info ? info.message : 'ok'));
  await broken.start();
  assert.deepEqual(errors, ['No run r9']);
});

const table: CompareTable = {
  runs: [
    { id: 'a', name: 'a', pipeline: 'p', experiment: 'e', state: 'succeeded', duration: 1, created_at: 1, params: { lr: 0.1, n: 5 }, metrics: { 'ev.acc': 0.8, 'ev.loss': 0.3 } },
    { id: 'b', name: 'b', pipeline: 'p', experiment: 'e', state: 'succeeded', duration: 1, created_at: 2, params: { lr: 0.2, n: 5 }, metrics: { 'ev.acc': 0.9, 'ev.loss': 0.2 } },
    { id: 'c', name: 'c', pipeline: 'p', experiment: 'e', state: 'failed', duration: 1, created_at: 3, params: { lr: 0.2, n: 5, extra: 'x' }, metrics: {} }
  ],
  params: ['extra', 'lr', 'n'],
  differ: ['extra', 'lr'],
  metrics: ['ev.acc', 'ev.loss']
};

test('compare rows: differences, best run per metric (lower is better for losses), bars', () => {
  assert.deepEqual(paramRows(table), [
    { name: 'extra', values: ['', '', 'x'], differs: true },
    { name: 'lr', values: ['0.1', '0.2', '0.2'], differs: true },
    { name: 'n', values: ['5', '5', '5'], differs: false }
  ]);
  const [acc, loss] = metricRows(table);
  assert.deepEqual(acc.values, [0.8, 0.9, null]);
  assert.equal(acc.best, 1);
  assert.equal(acc.lowerIsBetter, false);
  assert.equal(loss.lowerIsBetter, true);
  assert.equal(loss.best, 1);
  const same = metricRows({ ...table, runs: table.runs.map(r => ({ ...r, metrics: { 'ev.acc': 1 } })), metrics: ['ev.acc'] });
  assert.equal(same[0].best, -1, 'no best when every value is equal');
  const b = bars([2, 4, null]);
  assert.deepEqual(b.map(x => x.fraction), [0.5, 1, 0]);
  assert.deepEqual(bars([-1, 1]).map(x => x.fraction), [0.02, 1]);
  assert.deepEqual(bars([null]).map(x => x.value), [null]);
  assert.equal(formatMetric(0.123456), '0.1235');
  assert.equal(formatMetric(3), '3');
  assert.equal(formatMetric(0.00001234), '1.234e-5');
  assert.equal(formatMetric(null), '—');
});

test('compare rows show a float parameter as a float (threshold 1.0, not 1), as the run lists do', () => {
  const floats: CompareTable = {
    runs: [
      { ...table.runs[0], params: { threshold: 1, n: 5, name: 'x' }, float_params: ['threshold'] },
      { ...table.runs[1], params: { threshold: 2.5, n: 5, name: 'x' }, float_params: ['threshold'] },
      { ...table.runs[2], params: { threshold: 1, n: 5, name: 'x' } } // an older server: no float_params
    ],
    params: ['n', 'name', 'threshold'],
    differ: ['threshold'],
    metrics: []
  };
  assert.deepEqual(paramRows(floats), [
    { name: 'n', values: ['5', '5', '5'], differs: false },
    { name: 'name', values: ['x', 'x', 'x'], differs: false },
    { name: 'threshold', values: ['1.0', '2.5', '1'], differs: true }
  ]);
});

test('lineage graph: inputs → producer → copies (cache reuse) → consumers of each copy', () => {
  const art: LineageArtifact = {
    run: 'r2', step: 'train', output: 'model', digest: 'd'.repeat(64), kind: 'artifact', format: 'file', size: 11, preview: null,
    cached: true,
    producer: {
      run: 'r1', step: 'train', component: 'train', code_digest: 'c'.repeat(64), cache_key: 'k', state: 'succeeded',
      started_at: 1, finished_at: 2, duration: 1, reason: '',
      inputs: [
        { name: 'data', kind: 'artifact', run: 'r1', step: 'prepare', output: 'output', digest: 'e'.repeat(64), format: 'json', state: 'succeeded' },
        { name: 'lr', kind: 'parameter', parameter: 'lr', value: 0.5 }
      ]
    },
    occurrences: [
      { run: 'r2', step: 'train', output: 'model', how: 'cached', state: 'cached', at: 5 },
      { run: 'r1', step: 'train', output: 'model', how: 'produced', state: 'succeeded', at: 2 }
    ],
    consumers: [
      { run: 'r1', step: 'evaluate', component: 'evaluate', input: 'model', from_step: 'train', from_output: 'model', cached: false, outputs: { output: { digest: 'f', format: 'json' } }, state: 'succeeded', started_at: 3, finished_at: 4, duration: 1, reason: '' },
      { run: 'r2', step: 'evaluate', component: 'evaluate', input: 'model', from_step: 'train', from_output: 'model', cached: false, outputs: {}, state: 'succeeded', started_at: 6, finished_at: 7, duration: 1, reason: '' }
    ],
    runs: { r1: { name: 'baseline', pipeline: 'p', experiment: 'e', state: 'succeeded', created_at: 1 }, r2: { name: 'again', pipeline: 'p', experiment: 'e', state: 'succeeded', created_at: 4 } }
  };
  const g = lineageGraph(art);
  assert.deepEqual(g.columns.map(c => c.length), [2, 1, 2, 2]);
  const [inputs, [producer], copies, users] = g.columns;
  assert.deepEqual(inputs[0].link, { run: 'r1', step: 'prepare', output: 'output' });
  assert.equal(inputs[1].title, 'lr = 0.5');
  assert.equal(producer.run, 'r1');
  assert.match(producer.detail, /code cccccccccccc/);
  assert.deepEqual(copies.map(c => [c.run, c.cached, c.focus]), [['r1', false, false], ['r2', true, true]], 'the produced copy first');
  assert.deepEqual(users.map(u => u.run), ['r1', 'r2']);
  assert.deepEqual(users[0].link, { run: 'r1', step: 'evaluate', output: 'output' });
  assert.equal(users[1].link, null, 'no outputs: nothing to re-centre on');
  const edges = g.edges.map(e => `${e.from}>${e.to}${e.cached ? ' (cache)' : ''}`);
  assert.deepEqual(edges, [
    'in:data>step:r1/train',
    'in:lr>step:r1/train',
    'step:r1/train>occ:r1/train/model',
    'step:r1/train>occ:r2/train/model (cache)',
    'occ:r1/train/model>use:r1/evaluate/model',
    'occ:r2/train/model>use:r2/evaluate/model'
  ]);
  assert.deepEqual(g.runs, ['r1', 'r2']);
});

test('generated run names stay apart in a narrow list', () => {
  const today = new Date(2026, 10, 30, 20, 0, 0);
  assert.equal(shortRunName({ id: 'r1', pipeline: 'digits', name: 'digits 2026-11-30 19:02:03' }, today), 'digits · 19:02:03');
  assert.equal(shortRunName({ id: 'r1', pipeline: 'digits', name: 'digits 2026-11-29 19:02:03' }, today), 'digits · 11-29 19:02');
  assert.equal(shortRunName({ id: 'r1', pipeline: 'digits', name: 'digits 2026-11-30 19:02:03 (re-run from train)' }, today),
    'digits · 19:02:03 (re-run from train)');
  assert.equal(shortRunName({ id: 'r1', pipeline: 'digits', name: 'my baseline' }, today), 'my baseline');
  assert.equal(shortRunName({ id: 'r1', pipeline: 'digits', name: '' }, today), 'digits');
});

test('timeline: bars on the run clock, running steps grow to now, cached steps are marks', () => {
  const t = new Timeline();
  const step = (name: string, state: string, started_at: number | null, finished_at: number | null) =>
    ({ name, component: name, state, started_at, finished_at }) as unknown as RunSnapshot['steps'][number];
  t.setSnapshot({ id: 'r', created_at: 100, started_at: 100, finished_at: null, state: 'running',
    steps: [step('prep', 'cached', null, 101), step('train', 'succeeded', 101, 105), step('eval', 'pending', null, null)] } as unknown as RunSnapshot);
  assert.equal(t.apply({ type: 'StepStarted', run_id: 'r', ts: 105, id: 1, step: 'eval', attempt: 1, max_attempts: 1 }), true);
  let rows = t.rows(110);
  assert.deepEqual(rows.map(r => [r.name, r.state]), [['prep', 'cached'], ['train', 'succeeded'], ['eval', 'running']]);
  assert.deepEqual(rows.map(r => r.seconds), [null, 4, 5]);
  assert.deepEqual(rows.map(r => r.left), [0.1, 0.1, 0.5]);
  assert.equal(rows[1].width, 0.4);
  assert.equal(rows[2].width, 0.5, 'running until now');
  t.apply({ type: 'StepFinished', run_id: 'r', ts: 106, id: 2, step: 'eval', state: 'failed', attempt: 1, duration: 1, reason: '', traceback: '' });
  t.apply({ type: 'RunFinished', run_id: 'r', ts: 106, id: 3, state: 'failed', reason: '', duration: 6 });
  rows = t.rows(500);
  assert.deepEqual(rows.map(r => r.seconds), [null, 4, 1], 'a finished run no longer grows');
  assert.equal(rows[2].left + rows[2].width, 1);
});
