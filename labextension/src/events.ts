/**
 * The nbpipe event vocabulary and run snapshot, mirroring `nbpipe/events.py` (the only wire
 * format: runner → server extension → this panel). Field names and state names must stay the
 * same as in Python; `tests/lab/test_version_and_vocabulary.py` checks they do.
 *
 * Non-goals: folding events into a run (the shared run view, `run_view_state.js`, does that).
 */

export const RUN_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export const STEP_STATES = [
  'pending',
  'running',
  'retrying',
  'succeeded',
  'cached',
  'failed',
  'cancelled',
  'skipped'
] as const;

export type RunState = (typeof RUN_STATES)[number];
export type StepState = (typeof STEP_STATES)[number];

export const RUN_FINAL: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled']);
export const STEP_FINAL: ReadonlySet<string> = new Set([
  'succeeded',
  'cached',
  'failed',
  'cancelled',
  'skipped'
]);
export const STEP_OK: ReadonlySet<string> = new Set(['succeeded', 'cached']);

/** JSON values as they travel in params, previews and outputs. */
export type JSONValue =
  | null
  | boolean
  | number
  | string
  | JSONValue[]
  | { [key: string]: JSONValue };

interface EventBase {
  run_id: string;
  ts: number;
  id: number;
}

export interface RunCreated extends EventBase {
  type: 'RunCreated';
  name: string;
  pipeline: string;
  experiment: string;
  params: Record<string, JSONValue>;
  graph: Record<string, JSONValue>;
}

export interface RunStarted extends EventBase {
  type: 'RunStarted';
}

export interface RunFinished extends EventBase {
  type: 'RunFinished';
  state: RunState;
  reason: string;
  duration: number;
}

export interface StepStarted extends EventBase {
  type: 'StepStarted';
  step: string;
  attempt: number;
  max_attempts: number;
}

export interface StepRetrying extends EventBase {
  type: 'StepRetrying';
  step: string;
  attempt: number;
  max_attempts: number;
  delay: number;
  reason: string;
}

export interface StepLog extends EventBase {
  type: 'StepLog';
  step: string;
  attempt: number;
  stream: string;
  text: string;
}

export interface ArtifactSaved extends EventBase {
  type: 'ArtifactSaved';
  step: string;
  name: string;
  digest: string;
  kind: string;
  format: string;
  size: number;
  preview: Record<string, JSONValue> | null;
}

export interface StepFinished extends EventBase {
  type: 'StepFinished';
  step: string;
  state: StepState;
  attempt: number;
  duration: number;
  reason: string;
  traceback: string;
}

/** A ParallelFor loop expanded at run time: `steps` joined the graph, one set per item. */
export interface StepsAdded extends EventBase {
  type: 'StepsAdded';
  loop: string;
  items: number;
  steps: Array<Record<string, JSONValue>>;
}

/** The workers of a distributed step's attempt (`workers=N`): one entry per rank. */
export interface WorkerState {
  rank: number;
  pid: number | null;
  state: 'starting' | 'running' | 'succeeded' | 'failed' | 'stopped' | 'not started';
  exit_code: number | null;
}

export interface StepWorkers extends EventBase {
  type: 'StepWorkers';
  step: string;
  attempt: number;
  workers: WorkerState[];
}

/**
 * The step waits for an identical step (same cache key) running now, and will reuse its result;
 * `reason` says so. The step keeps its state.
 */
export interface StepWaiting extends EventBase {
  type: 'StepWaiting';
  step: string;
  reason: string;
  waiting_for_run: string;
  waiting_for_step: string;
}

/** The run was archived, restored to the run lists or deleted (`nbpipe/runner/run_storage.py`). */
export interface RunStorage extends EventBase {
  type: 'RunStorage';
  storage: string;
}

export type RunEvent =
  | RunCreated
  | RunStarted
  | RunFinished
  | StepStarted
  | StepRetrying
  | StepLog
  | ArtifactSaved
  | StepFinished
  | StepsAdded
  | StepWorkers
  | StepWaiting
  | RunStorage;

export type EventType = RunEvent['type'];

export const EVENT_TYPES: readonly EventType[] = [
  'RunCreated',
  'RunStarted',
  'RunFinished',
  'StepStarted',
  'StepRetrying',
  'StepLog',
  'ArtifactSaved',
  'StepFinished',
  'StepsAdded',
  'StepWorkers',
  'StepWaiting',
  'RunStorage'
];

/** One step of a run snapshot (`GET /api/v1/runs/{id}`). */
export interface StepSnapshot {
  name: string;
  component: string;
  display_name: string;
  upstream: string[];
  state: StepState;
  attempt: number;
  max_attempts: number;
  duration: number | null;
  reason: string;
  traceback: string;
  cached: boolean;
  inputs: Record<string, JSONValue>;
  outputs: Record<string, JSONValue>;
}

/** A run snapshot: what every consumer starts from before applying events. */
export interface RunSnapshot {
  id: string;
  name: string;
  pipeline: string;
  experiment: string;
  state: RunState;
  params: Record<string, JSONValue>;
  labels?: Record<string, string>;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  duration: number | null;
  reason: string;
  last_event_id: number;
  steps: StepSnapshot[];
}

/** One row of the runner's run list (`GET /api/v1/runs`). */
export interface RunSummary {
  id: string;
  name: string;
  pipeline: string;
  experiment: string;
  state: RunState;
  reason: string;
  params: Record<string, JSONValue>;
  /** The params that are Python floats (JSON turns 1.0 into 1); the Lab server adds it. */
  float_params?: string[];
  labels: Record<string, string>;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  duration: number | null;
  step_counts: Partial<Record<StepState, number>>;
}

/**
 * Check that parsed JSON is an event of the vocabulary; returns it typed, or null for anything
 * else (a newer runner's event type is skipped rather than breaking the stream).
 */
export function asEvent(data: unknown): RunEvent | null {
  if (typeof data !== 'object' || data === null) {
    return null;
  }
  const record = data as { type?: unknown; run_id?: unknown; id?: unknown };
  if (
    typeof record.type !== 'string' ||
    !(EVENT_TYPES as readonly string[]).includes(record.type) ||
    typeof record.run_id !== 'string' ||
    typeof record.id !== 'number'
  ) {
    return null;
  }
  return data as RunEvent;
}

/** The id of an event this extension skips: its `id` field, else the frame's `id:` line, else 0. */
export function eventId(data: unknown, frameId: string | null): number {
  const id = typeof data === 'object' && data !== null ? (data as { id?: unknown }).id : undefined;
  const value = typeof id === 'number' ? id : Number(frameId ?? 0);
  return Number.isFinite(value) && value > 0 ? value : 0;
}
