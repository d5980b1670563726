import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatDuration } from '../src/format';

// Found by the QA pass: the Runs list, the panel and Compare showed a 24 ms run as "0.0 s" while
// its run page said "24 ms".
test('durations under a tenth of a second read in milliseconds', () => {
  assert.deepEqual([0.024, 0.0004, 0, 0.0996, 0.1, 0.42, 0.9996].map(formatDuration), ['24 ms', '0 ms', '0 ms', '100 ms', '100 ms', '420 ms', '1.0 s']);
});
