/**
 * The run view's reducer (`nbpipe/widgets/run_view_state.js`, shared by the notebook widget, the
 * panel and the run page) and the stream's event check (`events.ts`): a step waiting for an
 * identical running step shows why at once (`StepWaiting`), and an event type a newer runner sends
 * is skipped without breaking anything, its id still counted for resuming.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { asEvent, eventId } from '../src/events';

interface ViewStep {
  name: string;
  state: string;
  reason: string;
}

interface ViewRun {
  last_event_id: number;
  steps: ViewStep[];
}

interface Change {
  steps: string[];
}

interface RunViewState {
  runFromSnapshot(snapshot: unknown): ViewRun;
  applyRunEvent(run: ViewRun, event: unknown): Change | null;
}

/** The real ES module, loaded as the browser loads it (it imports nothing). */
async function loadState(): Promise<RunViewState> {
  // build/ts-tests/tests/ -> the repository root
  const source = readFileSync(join(__dirname, '..', '..', '..', 'nbpipe', 'widgets', 'run_view_state.js'), 'utf8');
  const dynamicImport = new Function('url', 'return import(url)') as (url: string) => Promise<RunViewState>;
  return dynamicImport(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);
}

const snapshot = {
  id: 'rB', name: 'b', pipeline: 'p', state: 'running', params: {}, last_event_id: 3,
  steps: [{ name: 'held', component: 'held', upstream: [], state: 'pending', attempt: 0, reason: '' }]
};

const waitingReason = "waiting for step 'held' of run rA, running the same code and inputs; its result will be reused";

test('a StepWaiting event gives the step its reason and keeps its state', async () => {
  const { runFromSnapshot, applyRunEvent } = await loadState();
  const run = runFromSnapshot(snapshot);
  const event = {
    type: 'StepWaiting', run_id: 'rB', ts: 1, id: 4, step: 'held', reason: waitingReason,
    waiting_for_run: 'rA', waiting_for_step: 'held'
  };
  assert.ok(asEvent(event), 'StepWaiting is part of the vocabulary');
  const change = applyRunEvent(run, event);
  assert.deepEqual(change?.steps, ['held']);
  assert.equal(run.steps[0].state, 'pending');
  assert.equal(run.steps[0].reason, waitingReason);
  assert.equal(run.last_event_id, 4);
  // its start replaces the reason
  applyRunEvent(run, { type: 'StepStarted', run_id: 'rB', ts: 2, id: 5, step: 'held', attempt: 1, max_attempts: 1 });
  assert.equal(run.steps[0].reason, '');
  assert.equal(run.steps[0].state, 'running');
});

test("an event type from a newer runner is skipped, and its id still counts", async () => {
  const { runFromSnapshot, applyRunEvent } = await loadState();
  const unknown = { type: 'StepTeleported', run_id: 'rB', ts: 1, id: 9, step: 'held', where: 'mars' };
  assert.equal(asEvent(unknown), null);
  assert.equal(eventId(unknown, '9'), 9);
  assert.equal(eventId({ type: 'X' }, '12'), 12);
  assert.equal(eventId('not an object', null), 0);
  const run = runFromSnapshot(snapshot);
  assert.equal(applyRunEvent(run, unknown), null);
  assert.equal(run.steps[0].state, 'pending');
  assert.equal(run.steps[0].reason, '');
});
