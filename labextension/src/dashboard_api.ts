/**
 * What the dashboard (run pages, the run list, compare, lineage) asks of the nbpipe server
 * extension (`/nbpipe/api/dashboard/...`, see `nbpipe/lab/dashboard.py`), as typed interfaces.
 * `request.ts` implements them; the DOM-free models depend only on this file.
 *
 * Non-goals: the panel's own calls (api.ts), talking to the runner directly.
 */

import type { JSONValue, RunEvent, RunSnapshot, RunSummary } from './events';

/** Filters of the run list; empty strings mean "any". */
export interface RunFilters {
  experiment: string;
  pipeline: string;
  notebook: string;
  state: string;
  q: string;
}

export interface FacetValue {
  value: string;
  runs: number;
}

export interface RunFacets {
  experiments: FacetValue[];
  pipelines: FacetValue[];
  notebooks: FacetValue[];
  states: Record<string, number>;
}

/** One page of `GET dashboard/runs`. */
export interface RunPage {
  runs: RunSummary[];
  total: number;
  limit: number;
  offset: number;
  last_event_id: number;
  facets?: RunFacets;
}

export interface CompareRun {
  id: string;
  name: string;
  pipeline: string;
  experiment: string;
  state: string;
  duration: number | null;
  created_at: number | null;
  params: Record<string, JSONValue>;
  /** The params that are Python floats (JSON turns 1.0 into 1); the Lab server adds it. */
  float_params?: string[];
  metrics: Record<string, number>;
}

/** `GET dashboard/compare`: the same columns as `nbpipe compare`. */
export interface CompareTable {
  runs: CompareRun[];
  params: string[];
  differ: string[];
  metrics: string[];
}

export interface LineageInput {
  name: string;
  kind: 'parameter' | 'artifact' | 'collected' | 'placeholder' | 'value';
  parameter?: string;
  value?: JSONValue;
  run?: string;
  step?: string;
  output?: string;
  digest?: string;
  format?: string;
  size?: number | null;
  state?: string;
}

export interface LineageStep {
  run: string;
  step: string;
  state: string;
  started_at: number | null;
  finished_at: number | null;
  duration: number | null;
  reason: string;
}

export interface LineageProducer extends LineageStep {
  component: string;
  code_digest: string;
  cache_key: string;
  inputs: LineageInput[];
}

export interface LineageOccurrence {
  run: string;
  step: string;
  output: string;
  how: 'produced' | 'cached' | 'same content';
  state: string;
  at: number | null;
}

export interface LineageConsumer extends LineageStep {
  component: string;
  input: string;
  from_step: string;
  from_output: string;
  cached: boolean;
  outputs: Record<string, { digest: string; format: string }>;
}

export interface LineageRunInfo {
  name: string;
  pipeline: string;
  experiment: string;
  state: string;
  created_at: number;
}

export interface LineageArtifact {
  run: string;
  step: string;
  output: string;
  digest: string;
  kind: string;
  format: string;
  size: number | null;
  preview: Record<string, JSONValue> | null;
  cached: boolean;
  producer: LineageProducer;
  occurrences: LineageOccurrence[];
  consumers: LineageConsumer[];
  runs: Record<string, LineageRunInfo>;
}

export interface Lineage {
  run: string;
  step: string;
  state: string;
  artifacts: LineageArtifact[];
}

export interface DashboardApi {
  /** `archived`: the archived runs instead of the others. */
  runPage(filters: RunFilters, offset: number, limit: number, facets: boolean, archived?: boolean): Promise<RunPage>;
  /** Every run's state events after `after` until `signal` aborts; resolves with the last id seen. */
  allEvents(after: number, onEvent: (event: RunEvent) => void, signal: AbortSignal): Promise<number>;
  run(id: string): Promise<RunSnapshot>;
  compare(ids: string[]): Promise<CompareTable>;
  lineage(run: string, step: string, output?: string | null): Promise<Lineage>;
}

export const NO_FILTERS: RunFilters = { experiment: '', pipeline: '', notebook: '', state: '', q: '' };
