/**
 * PanelModel against an in-memory server extension (the HTTP boundary is the only thing faked):
 * analysis and the parameter form, Run Pipeline, event streaming with resume, re-runs, errors.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { ExportResult, NbpipeApi, NotebookAnalysis, RunnerSettings, RunnerStatus } from '../src/api';
import type { JSONValue, RunEvent, RunSnapshot, RunSummary } from '../src/events';
import { PanelModel } from '../src/model';

const analysis: NotebookAnalysis = {
  path: 'tiny.ipynb',
  pipelines: ['tiny'],
  pipeline: 'tiny',
  digest: 'd1',
  parameters: [
    { name: 'n', type: 'int', default: 3 },
    { name: 'scale', type: 'float', default: 1.0 }
  ],
  steps: [
    { name: 'make', component: 'make', upstream: [] },
    { name: 'total', component: 'total', upstream: ['make'] }
  ],
  components: [],
  python: ['3.11']
};

function snapshot(id: string, state: RunSnapshot['state'], params: Record<string, JSONValue>): RunSnapshot {
  const step = (name: string, st: RunSnapshot['steps'][number]['state']) => ({
    name, component: name, display_name: '', upstream: [], state: st, attempt: 1, max_attempts: 1,
    duration: null, reason: '', traceback: '', cached: false, inputs: {}, outputs: {}
  });
  return {
    id, name: id, pipeline: 'tiny', experiment: 'Default', state, params, created_at: 1, started_at: null,
    finished_at: null, duration: null, reason: '', last_event_id: 1,
    steps: [step('make', state === 'failed' ? 'succeeded' : 'pending'), step('total', state === 'failed' ? 'failed' : 'pending')]
  };
}

class Err extends Error {
  constructor(message: string, readonly hint = '', readonly cell: number | null = null) {
    super(`[nbpipe] ${message}`);
  }
}

/** Runs finish after five events; `dropAfter` ends the first stream early with a network error. */
class FakeServer implements NbpipeApi {
  calls: string[] = [];
  runsById = new Map<string, RunSnapshot>();
  analyzeError: Err | null = null;
  dropAfter: number | null = null;
  saved: string[] = [];
  private seq = 0;

  status(): Promise<RunnerStatus> {
    return Promise.resolve({ mode: 'embedded', url: 'http://127.0.0.1:1', source: 'default', reachable: true, error: '', health: null });
  }
  settings(): Promise<RunnerSettings> {
    return Promise.resolve({ runner_url: null, has_token: false, source: 'default', editable: true, config_path: '/x' });
  }
  saveSettings(): Promise<RunnerSettings> {
    return Promise.reject(new Err('not used'));
  }
  current: NotebookAnalysis = analysis;
  contents: Array<Record<string, unknown> | null | undefined> = [];
  async analyze(path: string, pipeline?: string | null, content?: Record<string, unknown> | null): Promise<NotebookAnalysis> {
    this.calls.push(`analyze ${path} ${pipeline ?? ''}`);
    this.contents.push(content);
    if (this.analyzeError) {
      throw this.analyzeError;
    }
    return this.current;
  }
  exportNotebook(): Promise<ExportResult> {
    return Promise.resolve({ path: 'tiny.nbpipe', format: 'nbpipe', size: 4096 });
  }
  async runNotebook(path: string, params: Record<string, JSONValue>): Promise<RunSnapshot> {
    this.calls.push(`run ${path} ${JSON.stringify(params)}`);
    const snap = snapshot(`run-${++this.seq}`, 'queued', params);
    this.runsById.set(snap.id, snap);
    return snap;
  }
  async runs(): Promise<RunSummary[]> {
    this.calls.push('runs');
    return [...this.runsById.values()].reverse().map(s => ({ ...s, labels: {}, step_counts: {} }));
  }
  async run(id: string): Promise<RunSnapshot> {
    const snap = this.runsById.get(id);
    if (!snap) {
      throw new Err(`No run ${id}`);
    }
    return snap;
  }
  async cancel(id: string): Promise<void> {
    this.calls.push(`cancel ${id}`);
  }
  async rerun(id: string, fromStep?: string | null): Promise<RunSnapshot> {
    this.calls.push(`rerun ${id} ${fromStep ?? ''}`);
    const snap = snapshot(`run-${++this.seq}`, 'queued', this.runsById.get(id)?.params ?? {});
    this.runsById.set(snap.id, snap);
    return snap;
  }
  logs(id: string, step: string): Promise<string> {
    return Promise.resolve(`log of ${id}/${step}`);
  }
  artifact(): Promise<Blob> {
    return Promise.reject(new Err('not used'));
  }
  async events(id: string, after: number, onEvent: (e: RunEvent) => void): Promise<number> {
    this.calls.push(`events ${id} after=${after}`);
    const base = { run_id: id, ts: 0 };
    const all: RunEvent[] = [
      { ...base, id: 2, type: 'RunStarted' },
      { ...base, id: 3, type: 'StepStarted', step: 'make', attempt: 1, max_attempts: 1 },
      { ...base, id: 4, type: 'StepFinished', step: 'make', state: 'succeeded', attempt: 1, duration: 0.1, reason: '', traceback: '' },
      { ...base, id: 5, type: 'StepFinished', step: 'total', state: 'succeeded', attempt: 1, duration: 0.1, reason: '', traceback: '' },
      { ...base, id: 6, type: 'RunFinished', state: 'succeeded', reason: '', duration: 0.3 }
    ];
    let last = after;
    for (const e of all.filter(e => e.id > after)) {
      if (this.dropAfter !== null && e.id > this.dropAfter) {
        this.dropAfter = null;
        throw new TypeError('network error');
      }
      onEvent(e);
      last = e.id;
    }
    const snap = this.runsById.get(id);
    if (snap) {
      this.runsById.set(id, { ...snap, state: 'succeeded', last_event_id: last });
    }
    return last;
  }
}

const tick = () => new Promise(resolve => setTimeout(resolve, 5));

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) {
    await tick();
  }
  assert.ok(check(), 'condition not reached');
}

function newModel(server: FakeServer, dirty = false): PanelModel {
  return new PanelModel(server, {
    retryDelays: [1, 1],
    save: async path => {
      if (dirty) {
        server.saved.push(path);
      }
      return dirty;
    },
    content: async path => ({ cells: [], path })
  });
}

test('analysis fills the form with defaults and keeps what the user typed', async () => {
  const server = new FakeServer();
  const model = newModel(server, true);
  await model.setNotebook('tiny.ipynb');
  assert.deepEqual(model.state.raws, { n: '3', scale: '1.0' });
  assert.deepEqual(server.saved, []); // analysis reads the editor's content; it never saves
  assert.deepEqual(server.contents, [{ cells: [], path: 'tiny.ipynb' }]);
  model.setParam('n', '8');
  await model.analyze();
  assert.deepEqual(model.state.raws, { n: '8', scale: '1.0' });
  model.resetParams();
  assert.equal(model.state.raws.n, '3');
  assert.deepEqual(server.saved, []);
});

test('a field left at its default follows an edited constant; a typed one stays', async () => {
  const server = new FakeServer();
  const model = newModel(server);
  await model.setNotebook('tiny.ipynb');
  model.setParam('scale', '2.5');
  server.current = { ...analysis, parameters: [{ name: 'n', type: 'int', default: 9 }, { name: 'scale', type: 'float', default: 4.0 }] };
  await model.runPipeline(); // Run looks at the notebook again first
  assert.ok(server.calls.includes('run tiny.ipynb {"n":9,"scale":2.5}'), server.calls.join('\n'));
});

test('no pipeline is a normal state: nothing runs, the panel says how to add one', async () => {
  const server = new FakeServer();
  server.current = {
    ...analysis, path: 'notes.ipynb', pipelines: [], pipeline: null, digest: null, parameters: [], steps: [],
    reason: { message: 'No pipeline in notes.ipynb yet', detail: '', hint: 'Put %%component on the cells that are steps.' }
  };
  const model = newModel(server, true);
  await model.setNotebook('notes.ipynb');
  assert.equal(model.state.analysisError, null);
  assert.equal(await model.runPipeline(), null);
  assert.equal(await model.exportNotebook('kfp'), null);
  assert.equal(model.state.error, null);
  assert.equal(model.state.notice, 'No pipeline in notes.ipynb yet. Put %%component on the cells that are steps.');
  assert.ok(!server.calls.some(c => c.startsWith('run ')));
  assert.deepEqual(server.saved, []);
});

test('Run saves only a notebook with unsaved changes, and says so', async () => {
  const server = new FakeServer();
  const model = newModel(server, true);
  await model.setNotebook('tiny.ipynb');
  assert.deepEqual(server.saved, []);
  await model.runPipeline();
  assert.deepEqual(server.saved, ['tiny.ipynb']);
  assert.equal(model.state.notice, 'Saved tiny.ipynb before running (it had unsaved changes).');
  const clean = newModel(new FakeServer());
  await clean.setNotebook('tiny.ipynb');
  await clean.runPipeline();
  assert.equal(clean.state.notice, null);
});

test('a notebook error reaches the panel with its cell and fix', async () => {
  const server = new FakeServer();
  server.analyzeError = new Err('cell 2 has a syntax error. Fix the code in cell 2.', 'Fix the code in cell 2.', 2);
  const model = newModel(server);
  await model.setNotebook('broken.ipynb');
  assert.equal(model.state.analysis, null);
  assert.deepEqual(model.state.analysisError, { message: 'cell 2 has a syntax error.', hint: 'Fix the code in cell 2.', cell: 2 });
  assert.equal(await model.runPipeline(), null);
  assert.ok(!server.calls.some(c => c.startsWith('run ')));
});

test('after an export error, an edit or save of the notebook looks again and enables Run', async () => {
  const server = new FakeServer();
  server.analyzeError = new Err('cell 2 failed to export. Fix the code in cell 2.', 'Fix the code in cell 2.', 2);
  const model = new PanelModel(server, { retryDelays: [1], settleDelay: 0 });
  await model.setNotebook('broken.ipynb');
  assert.equal(model.state.analysis, null);
  await model.notebookChanged('other.ipynb'); // another notebook's edits change nothing here
  assert.equal(server.calls.filter(c => c.startsWith('analyze')).length, 1);
  server.analyzeError = null; // the user fixed cell 2
  await model.notebookChanged('broken.ipynb');
  assert.equal(model.state.analysisError, null);
  const pipeline = (m: PanelModel): string | null | undefined => m.state.analysis?.pipeline; // (no narrowing)
  assert.equal(pipeline(model), 'tiny'); // Run is enabled again
  await model.notebookChanged('broken.ipynb'); // a notebook that analyzes fine is not looked at per keystroke
  assert.equal(server.calls.filter(c => c.startsWith('analyze')).length, 2);
});

test('bad parameters stop the run before anything is sent', async () => {
  const server = new FakeServer();
  const model = newModel(server);
  await model.setNotebook('tiny.ipynb');
  model.setParam('n', 'three');
  assert.equal(await model.runPipeline(), null);
  assert.deepEqual(model.state.fieldErrors, { n: 'n must be a whole number, not "three"' });
  assert.ok(!server.calls.some(c => c.startsWith('run ')));
});

test('Run Pipeline submits typed values, streams events to the view and refreshes the list', async () => {
  const server = new FakeServer();
  const model = newModel(server);
  const snaps: string[] = [];
  const events: number[] = [];
  model.snapshot.connect(s => snaps.push(s.id));
  model.event.connect(e => events.push(e.id));
  await model.setNotebook('tiny.ipynb');
  model.setParam('n', '5');
  const id = await model.runPipeline();
  assert.equal(id, 'run-1');
  assert.ok(server.calls.includes('run tiny.ipynb {"n":5,"scale":1}'));
  await until(() => model.state.runState === 'succeeded');
  assert.deepEqual(snaps, ['run-1']);
  assert.deepEqual(events, [2, 3, 4, 5, 6]);
  await until(() => model.state.runs.length === 1);
  assert.equal(model.state.runs[0].id, 'run-1');
});

test('a dropped event stream resumes after the last event seen', async () => {
  const server = new FakeServer();
  server.dropAfter = 3;
  const model = newModel(server);
  const events: number[] = [];
  model.event.connect(e => events.push(e.id));
  await model.setNotebook('tiny.ipynb');
  await model.runPipeline();
  await until(() => model.state.runState === 'succeeded');
  assert.deepEqual(events, [2, 3, 4, 5, 6]);
  assert.deepEqual(server.calls.filter(c => c.startsWith('events')), ['events run-1 after=1', 'events run-1 after=3']);
  assert.equal(model.state.error, null);
});

test('re-run from the failed step picks the first failed step', async () => {
  const server = new FakeServer();
  server.runsById.set('old', snapshot('old', 'failed', { n: 2 }));
  const model = newModel(server);
  const newId = await model.rerunFromFailed('old');
  assert.ok(server.calls.includes('rerun old total'));
  assert.equal(model.state.runId, newId);
  await until(() => model.state.runState === 'succeeded');
  assert.equal(await model.loadLogs('make'), `log of ${newId}/make`);
});

test('a re-run saves the run’s own notebook (edited), never the one the panel shows', async () => {
  const server = new FakeServer();
  server.runsById.set('other', { ...snapshot('other', 'failed', {}), labels: { notebook: 'other.ipynb' } });
  server.runsById.set('kernel', { ...snapshot('kernel', 'failed', {}), labels: { kernel_notebook: '/root/k.ipynb' } });
  server.runsById.set('cli', snapshot('cli', 'failed', {}));
  const model = newModel(server, true);
  await model.setNotebook('tiny.ipynb');
  await model.rerunFromFailed('other');
  await model.rerun('kernel');
  await model.rerun('cli'); // no notebook behind it: nothing is saved
  assert.deepEqual(server.saved, ['other.ipynb', '/root/k.ipynb']);
});

test('opening an unknown run shows the server message', async () => {
  const model = newModel(new FakeServer());
  await model.openRun('nope');
  assert.equal(model.state.error?.message, 'No run nope');
});

test('switching notebooks drops the other notebook’s run and shows the new notebook’s newest run, live if still going', async () => {
  class Labelled extends FakeServer {
    async runs(): Promise<RunSummary[]> {
      this.calls.push('runs');
      return [...this.runsById.values()].reverse().map(s => ({ ...s, labels: s.labels ?? {}, step_counts: {} }));
    }
  }
  const server = new Labelled();
  server.runsById.set('a-run', { ...snapshot('a-run', 'succeeded', {}), labels: { notebook: 'a.ipynb' } });
  server.runsById.set('b-live', { ...snapshot('b-live', 'running', {}), labels: { notebook: 'dir/b.ipynb' } });
  const model = newModel(server);
  await model.setNotebook('a.ipynb');
  await model.refreshRuns();
  await model.openRun('a-run');
  assert.equal(model.state.runId, 'a-run');
  await model.setNotebook('b.ipynb'); // a.ipynb's run is not shown over b.ipynb: b's live run is
  await until(() => model.state.runId === 'b-live');
  await model.refreshRuns();
  await model.setNotebook('dir/b.ipynb'); // the same notebook by its full path: its run stays
  assert.equal(model.state.runId, 'b-live');
  await model.setNotebook('a.ipynb'); // a's newest run has finished: it is shown (how it ended), not followed
  await until(() => model.state.runId === 'a-run');
  assert.equal(model.state.runState, 'succeeded');
});
