/**
 * Archive, restore and delete without the DOM: `RunStorage` against an in-memory server extension
 * (only the HTTP boundary is faked), what the user is told, and the run list's Active | Archived
 * switch and its rows leaving at once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { deleteQuestion, leavesList, outcomeMessage, RunStorage, RunStorageAnswer, RunStorageApi, StorageOutcome } from '../src/archivemodel';
import type { CompareTable, DashboardApi, Lineage, RunFilters, RunPage } from '../src/dashboard_api';
import type { RunEvent, RunSnapshot, RunSummary } from '../src/events';
import { RunListModel } from '../src/runsmodel';

/** A refusal as request.ts throws it: `[nbpipe]` message ending with the hint, and the hint. */
class Refusal extends Error {
  constructor(message: string, readonly hint: string) {
    super(`[nbpipe] ${message} ${hint}`);
  }
}

class FakeStorage implements RunStorageApi {
  archived = new Map<string, number | null>([['r1', null], ['r2', null], ['live', null]]);
  calls: string[] = [];
  private gate: Promise<void> = Promise.resolve();
  open: () => void = () => undefined;

  hold(): void {
    this.gate = new Promise(resolve => (this.open = resolve));
  }

  private async answer(verb: string, id: string, fn: () => RunStorageAnswer): Promise<RunStorageAnswer> {
    this.calls.push(`${verb} ${id}`);
    await this.gate;
    if (id === 'live') {
      throw new Refusal(`Run live is running: it cannot be ${verb}d while its steps may still run.`, 'Cancel it first (nbpipe cancel live).');
    }
    return fn();
  }
  archiveRun(id: string): Promise<RunStorageAnswer> {
    return this.answer('archive', id, () => (this.archived.set(id, 100), { id, state: 'succeeded', archived: true, archived_at: 100 }));
  }
  unarchiveRun(id: string): Promise<RunStorageAnswer> {
    return this.answer('unarchive', id, () => (this.archived.set(id, null), { id, state: 'succeeded', archived: false, archived_at: null }));
  }
  deleteRun(id: string): Promise<RunStorageAnswer> {
    return this.answer('delete', id, () => (this.archived.delete(id), { id, state: 'succeeded', deleted: true }));
  }
}

test('apply: one call per run, refusals keep the runner message and hint, every view is told once', async () => {
  const api = new FakeStorage();
  const storage = new RunStorage(api);
  const seen: StorageOutcome[] = [];
  storage.changed.connect(o => seen.push(o));
  const outcome = await storage.apply('archive', ['r1', 'live', 'r2', 'r1']);
  assert.deepEqual(api.calls, ['archive r1', 'archive live', 'archive r2']);
  assert.deepEqual(outcome.done.map(r => r.id), ['r1', 'r2']);
  assert.equal(outcome.failed.length, 1);
  assert.equal(outcome.failed[0].error.message, 'Run live is running: it cannot be archived while its steps may still run.');
  assert.equal(outcome.failed[0].error.hint, 'Cancel it first (nbpipe cancel live).');
  assert.deepEqual(seen, [outcome]);
  const told = outcomeMessage(outcome);
  assert.equal(told.kind, 'error');
  assert.equal(told.message, '1 run not archived (2 archived): Run live is running: it cannot be archived while its steps may still run.');
  assert.equal(told.hint, 'Cancel it first (nbpipe cancel live).');
});

test('a second click while the first call is out sends nothing (a double click archives once)', async () => {
  const api = new FakeStorage();
  const storage = new RunStorage(api);
  api.hold();
  const first = storage.apply('archive', ['r1']);
  assert.ok(storage.busy('r1') && storage.busy() && !storage.busy('r2'));
  const second = await storage.apply('unarchive', ['r1']);
  assert.deepEqual(second, { action: 'unarchive', done: [], failed: [] });
  api.open();
  assert.deepEqual((await first).done.map(r => r.archived_at), [100]);
  assert.deepEqual(api.calls, ['archive r1']);
  assert.ok(!storage.busy());
  assert.equal(api.archived.get('r1'), 100);
});

test('what the user is told, and the delete question', () => {
  const one = (action: StorageOutcome['action']): string =>
    outcomeMessage({ action, done: [{ id: 'a', state: 'succeeded' }], failed: [] }).message;
  assert.equal(one('archive'), 'Run archived. Archived lists it; Restore brings it back.');
  assert.equal(one('unarchive'), 'Run restored. It is back in Active.');
  assert.equal(one('delete'), 'Run deleted.');
  const two = outcomeMessage({ action: 'archive', done: [{ id: 'a', state: 'failed' }, { id: 'b', state: 'succeeded' }], failed: [] });
  assert.deepEqual(two, { kind: 'info', message: '2 runs archived. Archived lists them; Restore brings them back.', hint: '' });
  const q = deleteQuestion([{ id: 'r1', name: 'baseline' }, { id: 'r2' }]);
  assert.match(q, /^Delete 2 runs: baseline \(r1\), r2\? This cannot be undone/);
  assert.match(q, /artifacts and the step cache stay/);
  assert.match(deleteQuestion([{ id: 'r9', name: 'r9' }]), /^Delete run r9\?/);
  assert.ok(leavesList('archive', false) && !leavesList('archive', true));
  assert.ok(leavesList('unarchive', true) && !leavesList('unarchive', false));
  assert.ok(leavesList('delete', true) && leavesList('delete', false));
});

function summary(id: string): RunSummary {
  return {
    id, name: id, pipeline: 'p', experiment: 'Default', state: 'succeeded', reason: '', params: {}, labels: {},
    created_at: 1, started_at: 1, finished_at: 2, duration: 1, step_counts: {}
  };
}

/** Active and archived runs; `runPage` answers from whichever list it is asked for. */
class FakeDashboard implements DashboardApi {
  active = ['a1', 'a2', 'a3'];
  archived = ['z1'];
  asked: boolean[] = [];
  async runPage(_f: RunFilters, offset: number, limit: number, facets: boolean, archived = false): Promise<RunPage> {
    this.asked.push(archived);
    const ids = archived ? this.archived : this.active;
    return { runs: ids.slice(offset, offset + limit).map(summary), total: ids.length, limit, offset, last_event_id: 0,
      facets: facets ? { experiments: [], pipelines: [], notebooks: [], states: {} } : undefined };
  }
  allEvents(_after: number, _on: (e: RunEvent) => void, signal: AbortSignal): Promise<number> {
    return new Promise(resolve => signal.addEventListener('abort', () => resolve(0)));
  }
  async run(id: string): Promise<RunSnapshot> {
    throw new Error(`unused ${id}`);
  }
  async compare(): Promise<CompareTable> {
    throw new Error('unused');
  }
  async lineage(): Promise<Lineage> {
    throw new Error('unused');
  }
}

test('the run list switches to archived runs and drops runs that left it at once', async () => {
  const api = new FakeDashboard();
  const model = new RunListModel(api);
  await model.load(true);
  assert.deepEqual(model.state.runs.map(r => r.id), ['a1', 'a2', 'a3']);
  model.toggleSelected('a1');
  model.toggleSelected('a3');

  // Archived: the runner is gone through before the rows change; until then the rows are the old ones
  api.active = ['a2'];
  api.archived = ['a3', 'a1', 'z1'];
  const pending = model.dropRuns(['a1', 'a3']);
  assert.deepEqual(model.state.runs.map(r => r.id), ['a2'], 'the rows leave before the page reloads');
  assert.equal(model.state.total, 1);
  assert.deepEqual(model.state.selected, []);
  await pending;
  assert.deepEqual(model.state.runs.map(r => r.id), ['a2']);

  const switching = model.setArchived(true);
  assert.equal(model.state.archived, true);
  assert.equal(model.state.runs.length, 0, 'no active rows under the Archived switch while it loads');
  await switching;
  assert.deepEqual(model.state.runs.map(r => r.id), ['a3', 'a1', 'z1']);
  assert.deepEqual(api.asked.slice(-1), [true]);
  await model.setOffset(0); // paging stays in the archived list
  await model.load();
  assert.deepEqual(api.asked.slice(-1), [true]);
  await model.setArchived(false);
  assert.deepEqual(model.state.runs.map(r => r.id), ['a2']);
  assert.deepEqual(api.asked.slice(-1), [false]);
  model.dispose();
});
