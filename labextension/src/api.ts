/**
 * What the panel asks of the nbpipe server extension (`/nbpipe/api/...`), as a typed interface.
 * `request.ts` implements it over JupyterLab's `ServerConnection`; the model depends only on
 * this interface, which keeps the model free of the DOM and of JupyterLab.
 *
 * Non-goals: talking to the runner directly (the browser never knows its address or token).
 */

import type { JSONValue, RunEvent, RunSnapshot, RunSummary } from './events';
import type { Parameter } from './params';

export interface RunnerStatus {
  mode: 'embedded' | 'remote';
  url: string | null;
  source: 'env' | 'config' | 'default';
  reachable: boolean;
  error: string;
  health: Record<string, JSONValue> | null;
  /** false: the Jupyter server did not answer the status request (set by the panel, not the server). */
  server?: boolean;
  /** The runner answers but its scheduling loop stopped (health 503 'stalled'); error says why. */
  stalled?: boolean;
}

export interface RunnerSettings {
  runner_url: string | null;
  has_token: boolean;
  source: 'env' | 'config' | 'default';
  editable: boolean;
  config_path: string;
}

export interface IoSpec {
  name: string;
  type: string;
  kind: string;
  artifact_type?: string;
  default?: JSONValue;
}

export interface ComponentInfo {
  name: string;
  inputs: IoSpec[];
  outputs: IoSpec[];
  image: string;
  retries: number;
  cache: boolean;
}

export interface StepInfo {
  name: string;
  component: string;
  upstream: string[];
  display_name?: string;
}

/** Why a notebook has no pipeline yet, and how to add one. */
export interface NoPipeline {
  message: string;
  detail: string;
  hint: string;
}

/** What `POST /notebook/analyze` finds in a notebook (`pipeline` null: none yet, see `reason`). */
export interface NotebookAnalysis {
  path: string;
  pipelines: string[];
  pipeline: string | null;
  digest: string | null;
  reason?: NoPipeline | null;
  parameters: Parameter[];
  steps: StepInfo[];
  components: ComponentInfo[];
  python: string[];
}

/** An image a KFP export references: nbpipe's step image (`default`) or a component's own. */
export interface KfpImage {
  image: string;
  steps: string[];
  default: boolean;
  /** The Python minor the image must have (the steps' code loads only there). */
  python: string;
}

export interface ExportResult {
  path: string;
  format: 'nbpipe' | 'kfp';
  size: number;
  /** KFP only: the images the YAML references, the one used instead of the default, and what to do. */
  images?: KfpImage[];
  image?: string | null;
  note?: string;
}

export type ExportFormat = ExportResult['format'];

export interface NbpipeApi {
  status(): Promise<RunnerStatus>;
  settings(): Promise<RunnerSettings>;
  saveSettings(runnerUrl: string | null, token?: string | null): Promise<RunnerSettings>;
  /** `content`: the notebook's JSON as the editor holds it (else the saved file is read). */
  analyze(path: string, pipeline?: string | null, content?: Record<string, unknown> | null): Promise<NotebookAnalysis>;
  /** `image`: KFP only, the pushed step image to reference instead of nbpipe/base:pyX.Y. */
  exportNotebook(path: string, format: ExportFormat, pipeline?: string | null, image?: string | null): Promise<ExportResult>;
  runNotebook(
    path: string,
    params: Record<string, JSONValue>,
    pipeline?: string | null
  ): Promise<RunSnapshot>;
  runs(limit?: number): Promise<RunSummary[]>;
  run(id: string): Promise<RunSnapshot>;
  cancel(id: string): Promise<void>;
  rerun(id: string, fromStep?: string | null): Promise<RunSnapshot>;
  logs(id: string, step: string, attempt?: number | null): Promise<string>;
  artifact(digest: string, mime: string): Promise<Blob>;
  /**
   * Stream a run's events after `after`, calling `onEvent` for each, until the run's stream ends
   * (after `RunFinished`) or `signal` aborts. Resolves with the last event id seen.
   */
  events(
    id: string,
    after: number,
    onEvent: (event: RunEvent) => void,
    signal: AbortSignal
  ): Promise<number>;
}
