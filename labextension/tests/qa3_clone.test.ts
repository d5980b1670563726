import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { NotebookAnalysis } from '../src/api';
import { clonedRaws } from '../src/clone';
import type { RunSummary } from '../src/events';

// Kubeflow's "Clone run": the form filled with a run's parameters, to edit and run again.
const analysis = {
  path: 'a.ipynb', pipelines: ['train', 'other'], pipeline: 'train', digest: 'd', reason: null, steps: [], components: [], python: [],
  parameters: [
    { name: 'n', type: 'int', default: 3 }, { name: 'c', type: 'float', default: 0.5 },
    { name: 'tags', type: 'list[str]', default: [] }, { name: 'fast', type: 'bool', default: false }
  ]
} as unknown as NotebookAnalysis;

function run(params: RunSummary['params'], pipeline = 'train'): RunSummary {
  return { id: 'r1', name: 'train 2026-12-02 17:00:00', pipeline, experiment: 'default', state: 'succeeded', reason: '', params,
    float_params: ['c'], labels: {}, created_at: 0, started_at: 0, finished_at: 1, duration: 1, step_counts: {} };
}

test('a cloned run fills the form with its parameters as the fields show them', () => {
  const out = clonedRaws(analysis, run({ n: 7, c: 2, tags: ['a', 'b'], fast: true, gone: 1 }));
  assert.ok('raws' in out);
  assert.deepEqual(out.raws, { n: '7', c: '2.0', tags: '["a","b"]', fast: true });
  assert.equal(out.note, 'Filled in the parameters of run train 2026-12-02 17:00:00: edit them, then Run Pipeline. Not in the pipeline any more: gone.');
});

test('a run of another pipeline is not cloned into this form, and says what to do', () => {
  const out = clonedRaws(analysis, run({ n: 1 }, 'other'));
  assert.ok('error' in out);
  assert.match(out.error, /ran pipeline 'other'; the form is for 'train'\. Pick 'other' above/);
  assert.ok('error' in clonedRaws(null, run({})));
});
