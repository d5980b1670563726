import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SseParser } from '../src/sse';

test('frames split across chunks come out whole, in order', () => {
  const p = new SseParser();
  assert.deepEqual(p.push('id: 1\nevent: RunStarted\nda'), []);
  assert.deepEqual(p.push('ta: {"a":1}\n\nid: 2\n'), [{ id: '1', event: 'RunStarted', data: '{"a":1}' }]);
  assert.deepEqual(p.push('data: x\n\n'), [{ id: '2', event: 'message', data: 'x' }]);
});

test('comments (keep-alives) and empty frames are skipped; CRLF and multi-line data work', () => {
  const p = new SseParser();
  assert.deepEqual(p.push(': keep-alive\n\n'), []);
  assert.deepEqual(p.push('id:7\r\ndata: a\r\ndata:b\r\n\r\n'), [{ id: '7', event: 'message', data: 'a\nb' }]);
});
