/**
 * The Endpoints page's DOM-free model: the runner's model-serving endpoints, the one selected,
 * and a test request (a JSON array, sent as one tensor, or a KServe v2 request) with its answer
 * or the endpoint's error as it said it (a 4xx for a bad request, a crashing predict's reason).
 *
 * Non-goals: drawing (endpoints.ts), HTTP (request.ts's `EndpointsHttp`).
 */

import type { JSONValue } from './events';

export interface EndpointVersion {
  version: string;
  digest: string;
  size: number;
  created_at: number;
  description: string;
  source: Record<string, JSONValue>;
  model: Record<string, JSONValue>;
  default: boolean;
}

export interface EndpointInfo {
  name: string;
  url: string | null;
  infer_url: string | null;
  state: 'starting' | 'updating' | 'ready' | 'failed' | 'restarting';
  reason: string;
  default_version: string;
  versions: EndpointVersion[];
  restarts: number;
  updated_at: number;
}

export interface InferTensor {
  name: string;
  shape: number[];
  datatype: string;
  data: JSONValue[];
}

export interface InferAnswer {
  model_name: string;
  model_version: string;
  outputs: InferTensor[];
}

/** What the page needs from the server extension (`/nbpipe/api/endpoints…`). */
export interface EndpointsApi {
  endpoints(): Promise<EndpointInfo[]>;
  infer(name: string, request: JSONValue, version: string | null): Promise<InferAnswer>;
  rollback(name: string, version: string | null): Promise<EndpointInfo>;
  deleteEndpoint(name: string): Promise<void>;
}

export interface TestResult {
  ok: boolean;
  text: string; // the answer (outputs) or the error, as shown
  ms: number;
}

export const EXAMPLE_REQUEST = '[[0.0, 1.0, 2.0, 3.0]]';

/** The test input as JSON: an array (one tensor) or a v2 request object; throws a readable Error. */
export function parseTestInput(text: string): JSONValue {
  const trimmed = text.trim();
  if (!trimmed) {
    throw new Error('Type a JSON array like [[1, 2, 3, 4]] or a v2 request {"inputs": [...]}.');
  }
  let value: JSONValue;
  try {
    value = JSON.parse(trimmed) as JSONValue;
  } catch (error) {
    throw new Error(`Not JSON: ${(error as Error).message}`);
  }
  if (!Array.isArray(value) && (value === null || typeof value !== 'object')) {
    throw new Error('The test input must be a JSON array or a v2 request object {"inputs": [...]}.');
  }
  return value;
}

/** One line per output: `name [shape] DATATYPE: data` (long data shortened). */
export function formatOutputs(answer: InferAnswer): string {
  const head = `${answer.model_name} version ${answer.model_version}`;
  const lines = answer.outputs.map(o => {
    const data = JSON.stringify(o.data);
    const shown = data.length > 400 ? `${data.slice(0, 400)}…` : data;
    return `${o.name} [${o.shape.join(', ')}] ${o.datatype}: ${shown}`;
  });
  return [head, ...lines].join('\n');
}

export interface EndpointsState {
  endpoints: EndpointInfo[];
  selected: string | null;
  version: string | null; // null: the default version
  error: string;
  busy: boolean;
  result: TestResult | null;
}

/** The list's empty-state line: none while the list could not be read (the error says why; "No
 * endpoints yet" over "No runner at …" read as if the runner had answered with none). */
export function emptyListText(s: Pick<EndpointsState, 'endpoints' | 'error'>): string {
  return s.endpoints.length || s.error ? '' : 'No endpoints yet: deploy one with nbpipe.serve(...) or a deploy step in a pipeline.';
}

export class EndpointsModel {
  state: EndpointsState = { endpoints: [], selected: null, version: null, error: '', busy: false, result: null };
  private readonly listeners = new Set<(s: EndpointsState) => void>();

  constructor(private readonly api: EndpointsApi, private readonly now: () => number = () => Date.now()) {}

  subscribe(fn: (s: EndpointsState) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private set(patch: Partial<EndpointsState>): void {
    this.state = { ...this.state, ...patch };
    for (const fn of this.listeners) {
      fn(this.state);
    }
  }

  get current(): EndpointInfo | null {
    return this.state.endpoints.find(e => e.name === this.state.selected) ?? null;
  }

  async reload(): Promise<void> {
    try {
      const endpoints = await this.api.endpoints();
      const keep = endpoints.some(e => e.name === this.state.selected);
      const selected = keep ? this.state.selected : endpoints[0]?.name ?? null;
      const version = keep && endpoints.find(e => e.name === selected)?.versions.some(v => v.version === this.state.version)
        ? this.state.version
        : null;
      this.set({ endpoints, selected, version, error: '' });
    } catch (error) {
      this.set({ error: (error as Error).message });
    }
  }

  select(name: string): void {
    this.set({ selected: name, version: null, result: null });
  }

  chooseVersion(version: string | null): void {
    this.set({ version: version || null });
  }

  /** Send the test request; the result (or the endpoint's error) lands in `state.result`. */
  async send(text: string): Promise<void> {
    const name = this.state.selected;
    if (!name) {
      this.set({ result: { ok: false, text: 'No endpoint selected.', ms: 0 } });
      return;
    }
    let body: JSONValue;
    try {
      body = parseTestInput(text);
    } catch (error) {
      this.set({ result: { ok: false, text: (error as Error).message, ms: 0 } });
      return;
    }
    this.set({ busy: true });
    const started = this.now();
    try {
      const answer = await this.api.infer(name, body, this.state.version);
      this.set({ busy: false, result: { ok: true, text: formatOutputs(answer), ms: this.now() - started } });
    } catch (error) {
      const e = error as Error & { hint?: string };
      const text = e.hint ? `${e.message}\n\n${e.hint}` : e.message;
      this.set({ busy: false, result: { ok: false, text, ms: this.now() - started } });
    }
  }

  async rollback(version: string | null = null): Promise<void> {
    const name = this.state.selected;
    if (!name) {
      return;
    }
    try {
      await this.api.rollback(name, version);
      await this.reload();
    } catch (error) {
      this.set({ error: (error as Error).message });
    }
  }

  async remove(): Promise<void> {
    const name = this.state.selected;
    if (!name) {
      return;
    }
    try {
      await this.api.deleteEndpoint(name);
      this.set({ selected: null, result: null });
      await this.reload();
    } catch (error) {
      this.set({ error: (error as Error).message });
    }
  }
}
