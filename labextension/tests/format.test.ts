import assert from 'node:assert/strict';
import { test } from 'node:test';

import { errorInfo, formatAgo, formatDuration, formatParams, runSource } from '../src/format';

test('durations read naturally', () => {
  assert.deepEqual([0.42, 12.4, 185, 7265, null, -1].map(formatDuration), ['420 ms', '12 s', '3 min 05 s', '2 h 01 min', '', '']);
  assert.equal(formatAgo(1000, 1010), 'just now');
  assert.equal(formatAgo(1000, 1000 + 300), '5 min ago');
  assert.equal(formatAgo(0, 3 * 86400), '1970-01-01');
});

test('parameters and sources summarize a run', () => {
  assert.equal(formatParams({ n: 3, label: 'a long label that goes on', ids: [1, 2] }, 10), 'n=3, label=a long la…, ids=[1,2]');
  // a Python float the answer names in float_params keeps its .0 (JSON made 1.0 the number 1)
  assert.equal(formatParams({ c: 1, n: 1, lr: 0.5 }, 24, ['c', 'lr']), 'c=1.0, n=1, lr=0.5');
  assert.equal(runSource({ labels: { notebook: 'work/quickstart.ipynb' }, pipeline: 'digits' }), 'quickstart.ipynb');
  assert.equal(runSource({ labels: {}, pipeline: 'digits' }), 'digits');
});

test('errors lose the [nbpipe] prefix and show the hint once', () => {
  const err = Object.assign(new Error('[nbpipe] cell 2 has a syntax error. Fix the code in cell 2.'), {
    hint: 'Fix the code in cell 2.',
    cell: 2
  });
  assert.deepEqual(errorInfo(err), { message: 'cell 2 has a syntax error.', hint: 'Fix the code in cell 2.', cell: 2 });
  assert.deepEqual(errorInfo('plain'), { message: 'plain', hint: '', cell: null });
});
