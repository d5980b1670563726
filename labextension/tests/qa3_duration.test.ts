/**
 * One run's duration reads the same everywhere: the run view's header, graph and details
 * (`run_view_state.js`, also the notebook widget) said "231 ms" and "3m 05s" while the panel's run
 * list, the Runs page and Compare (`format.ts`) said "0.2 s" and "3 min 05 s" for the same run.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { formatDuration } from '../src/format';

test('the run view and the Lab lists format every duration the same', async () => {
  const source = readFileSync(join(__dirname, '..', '..', '..', 'nbpipe', 'widgets', 'run_view_state.js'), 'utf8');
  const load = new Function('url', 'return import(url)') as (url: string) => Promise<{ formatDuration(s: number | null): string }>;
  const view = await load(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);
  const values = [null, -1, 0, 0.024, 0.231, 0.9996, 1, 4.25, 9.96, 12.4, 59.6, 60, 185, 3599.7, 3600, 7265, 90061];
  assert.deepEqual(values.map(v => view.formatDuration(v)), values.map(formatDuration));
  assert.deepEqual([0.231, 185, 7265].map(formatDuration), ['231 ms', '3 min 05 s', '2 h 01 min']);
});
