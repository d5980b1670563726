import assert from 'node:assert/strict';
import { test } from 'node:test';

import { baseType, collectParams, fieldKind, initialRaw, isRequired, Parameter, parseRaw } from '../src/params';

const n: Parameter = { name: 'n', type: 'int', default: 3 };
const scale: Parameter = { name: 'scale', type: 'float', default: 0.5 };
const verbose: Parameter = { name: 'verbose', type: 'bool', default: false };
const label: Parameter = { name: 'label', type: 'str', default: 'demo' };
const ids: Parameter = { name: 'ids', type: 'list[int]', default: [1, 2] };
const opts: Parameter = { name: 'opts', type: 'dict[str, float]' };
const seed: Parameter = { name: 'seed', type: 'Optional[int]' };
const anything: Parameter = { name: 'x', type: 'any' };

test('types map to fields', () => {
  assert.deepEqual(baseType('Optional[list[int]]'), { base: 'list', optional: true });
  assert.deepEqual(
    [n, scale, verbose, label, ids, opts, seed, anything].map(p => fieldKind(p.type)),
    ['integer', 'number', 'boolean', 'text', 'json', 'json', 'integer', 'any']
  );
  assert.equal(isRequired(opts), true);
  assert.equal(isRequired(seed), false);
  assert.equal(isRequired(n), false);
});

test('defaults show as the user would type them', () => {
  assert.deepEqual([n, scale, verbose, label, ids, opts, seed].map(initialRaw), ['3', '0.5', false, 'demo', '[1,2]', '', '']);
});

test('a float default that JSON made integral shows as a float, and parses back to a number', () => {
  const c: Parameter = { name: 'c', type: 'float', default: 1 };
  const opt: Parameter = { name: 'c', type: 'Optional[float]', default: -2 };
  assert.deepEqual([c, opt].map(initialRaw), ['1.0', '-2.0']);
  assert.deepEqual(parseRaw(c, initialRaw(c)), { ok: true, value: 1 });
  assert.equal(initialRaw({ name: 'n', type: 'int', default: 1 }), '1');
});

test('entries parse to typed values or name the problem', () => {
  assert.deepEqual(parseRaw(n, ' 42 '), { ok: true, value: 42 });
  assert.deepEqual(parseRaw(n, '4.5'), { ok: false, error: 'n must be a whole number, not "4.5"' });
  assert.deepEqual(parseRaw(n, ''), { ok: true, value: 3 });
  assert.deepEqual(parseRaw(scale, '1e-3'), { ok: true, value: 0.001 });
  assert.equal(parseRaw(scale, 'abc').ok, false);
  assert.deepEqual(parseRaw(verbose, true), { ok: true, value: true });
  assert.deepEqual(parseRaw(label, ' spaced '), { ok: true, value: ' spaced ' });
  assert.deepEqual(parseRaw(ids, '[3, 4]'), { ok: true, value: [3, 4] });
  assert.deepEqual(parseRaw(ids, '{"a": 1}'), { ok: false, error: 'ids must be a JSON list, e.g. [1, 2, 3]' });
  assert.deepEqual(parseRaw(opts, '[1]'), { ok: false, error: 'opts must be a JSON object, e.g. {"key": 1}' });
  assert.deepEqual(parseRaw(opts, ''), { ok: false, error: 'opts is required (dict[str, float])' });
  assert.deepEqual(parseRaw(seed, ''), { ok: true, value: null });
  assert.deepEqual(parseRaw(anything, '[1]'), { ok: true, value: [1] });
  assert.deepEqual(parseRaw(anything, 'text'), { ok: true, value: 'text' });
  assert.equal(parseRaw(n, '123456789012345678901').ok, false);
});

test('collectParams returns all values, or an error per bad field', () => {
  assert.deepEqual(collectParams([n, scale, verbose], { n: '7', verbose: true }), {
    values: { n: 7, scale: 0.5, verbose: true },
    errors: {}
  });
  assert.deepEqual(collectParams([n, opts], { n: 'x', opts: '{"a": 1}' }), {
    values: { opts: { a: 1 } },
    errors: { n: 'n must be a whole number, not "x"' }
  });
});
