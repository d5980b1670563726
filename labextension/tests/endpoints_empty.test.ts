import assert from 'node:assert/strict';
import { test } from 'node:test';

import { emptyListText } from '../src/endpointsmodel';

// Found by the QA pass: with the runner unreachable the Endpoints page said "No runner at …" and,
// under it, "No endpoints yet: deploy one …" as if the runner had answered with none.
test('the endpoint list says "none yet" only when it was read', () => {
  assert.match(emptyListText({ endpoints: [], error: '' }), /^No endpoints yet: deploy one/);
  assert.equal(emptyListText({ endpoints: [], error: 'No runner at http://127.0.0.1:1 (connection refused).' }), '');
});
