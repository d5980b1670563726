/**
 * The Endpoints page's DOM-free model against an in-memory server extension: list and selection,
 * the test input (array or v2 request; bad JSON said as such), answers and the endpoint's own
 * errors (4xx, a crashing predict with its traceback), version choice, rollback and delete.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  EndpointInfo,
  EndpointsApi,
  EndpointsModel,
  formatOutputs,
  InferAnswer,
  parseTestInput
} from '../src/endpointsmodel';
import type { JSONValue } from '../src/events';

function info(name: string, versions: string[], def: string): EndpointInfo {
  return {
    name, url: 'http://127.0.0.1:1', infer_url: `http://127.0.0.1:1/v2/models/${name}/infer`, state: 'ready',
    reason: '', default_version: def, restarts: 0, updated_at: 0,
    versions: versions.map(v => ({ version: v, digest: 'd', size: 1, created_at: 0, description: '', source: {}, model: {}, default: v === def }))
  };
}

class FakeApi implements EndpointsApi {
  eps = [info('iris', ['1', '2'], '2'), info('digits', ['1'], '1')];
  calls: Array<[string, JSONValue, string | null]> = [];

  async endpoints(): Promise<EndpointInfo[]> {
    return this.eps.map(e => ({ ...e }));
  }

  async infer(name: string, request: JSONValue, version: string | null): Promise<InferAnswer> {
    this.calls.push([name, request, version]);
    if (Array.isArray(request) && request.length === 0) {
      throw Object.assign(new Error("[nbpipe] Endpoint 'iris' answered 500: ValueError: empty"), { hint: 'Traceback …\nValueError: empty' });
    }
    return { model_name: name, model_version: version ?? '2', outputs: [{ name: 'output-0', shape: [1], datatype: 'INT64', data: [3] }] };
  }

  async rollback(name: string, version: string | null): Promise<EndpointInfo> {
    const e = this.eps.find(x => x.name === name)!;
    e.default_version = version ?? '1';
    return e;
  }

  async deleteEndpoint(name: string): Promise<void> {
    this.eps = this.eps.filter(e => e.name !== name);
  }
}

test('parseTestInput accepts arrays and v2 requests and says what is wrong otherwise', () => {
  assert.deepEqual(parseTestInput(' [[1, 2]] '), [[1, 2]]);
  assert.deepEqual(parseTestInput('{"inputs": []}'), { inputs: [] });
  assert.throws(() => parseTestInput(''), /JSON array like/);
  assert.throws(() => parseTestInput('[1, 2'), /Not JSON/);
  assert.throws(() => parseTestInput('42'), /must be a JSON array or a v2 request/);
});

test('formatOutputs shows each output with its shape and type', () => {
  const text = formatOutputs({ model_name: 'iris', model_version: '2', outputs: [{ name: 'y', shape: [2, 1], datatype: 'FP32', data: [0.5, 1] }] });
  assert.equal(text, 'iris version 2\ny [2, 1] FP32: [0.5,1]');
});

test('the model lists, selects, sends to a chosen version, rolls back and deletes', async () => {
  const api = new FakeApi();
  let t = 0;
  const model = new EndpointsModel(api, () => (t += 5));
  const seen: string[] = [];
  model.subscribe(s => seen.push(s.selected ?? '-'));
  await model.reload();
  assert.equal(model.state.selected, 'iris'); // the first one
  assert.equal(model.current?.default_version, '2');

  await model.send('[[5.1, 3.5, 1.4, 0.2]]');
  assert.deepEqual(api.calls.at(-1), ['iris', [[5.1, 3.5, 1.4, 0.2]], null]);
  assert.equal(model.state.result?.ok, true);
  assert.match(model.state.result!.text, /^iris version 2\noutput-0 \[1\] INT64: \[3\]/);
  assert.equal(model.state.result!.ms, 5);

  model.chooseVersion('1');
  await model.send('{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}');
  assert.equal(api.calls.at(-1)![2], '1');

  await model.send('not json');
  assert.equal(model.state.result?.ok, false);
  assert.match(model.state.result!.text, /Not JSON/);
  assert.equal(api.calls.length, 2); // nothing sent

  await model.send('[]'); // the endpoint's own error, with the predict function's traceback
  assert.equal(model.state.result?.ok, false);
  assert.match(model.state.result!.text, /answered 500: ValueError: empty\n\nTraceback/);
  assert.equal(model.state.busy, false);

  await model.rollback();
  assert.equal(model.current?.default_version, '1');
  assert.equal(model.state.version, '1'); // still a version it has

  model.select('digits');
  assert.equal(model.state.version, null);
  await model.remove();
  assert.deepEqual(model.state.endpoints.map(e => e.name), ['iris']);
  assert.equal(model.state.selected, 'iris');
  assert.ok(seen.includes('digits'));
});

test('a failed list load is shown, and the selection survives a reload', async () => {
  const api = new FakeApi();
  const model = new EndpointsModel(api);
  await model.reload();
  model.select('digits');
  api.endpoints = async () => {
    throw new Error('[nbpipe] No runner at http://127.0.0.1:9');
  };
  await model.reload();
  assert.match(model.state.error, /No runner/);
  assert.equal(model.state.selected, 'digits');
});
