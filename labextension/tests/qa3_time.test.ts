import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatClock, formatWhen } from '../src/format';

// Found by the QA pass: the run page's tab said "07:02:03 PM" while run names (the runner's) and
// the panel's run list said "19:02:03". Times now read on a 24-hour clock in every locale, in the
// locale's own order and separators.
test('times of day read on a 24-hour clock, in the locale’s format', () => {
  const evening = new Date(2026, 10, 30, 19, 2, 3).getTime() / 1000; // local time
  assert.equal(formatClock(evening, 'en-US'), '19:02:03');
  assert.equal(formatClock(evening, 'de-DE'), '19:02:03');
  const midnight = new Date(2026, 10, 30, 0, 5, 0).getTime() / 1000;
  assert.equal(formatClock(midnight, 'en-US'), '00:05:00'); // not "24:05:00"
  assert.equal(formatWhen(evening, 'en-US'), 'Nov 30, 2026, 19:02:03');
  assert.match(formatWhen(evening, 'de-DE'), /^30\. Nov\.? 2026, 19:02:03$/);
  assert.doesNotMatch(formatWhen(evening), /AM|PM/);
});
