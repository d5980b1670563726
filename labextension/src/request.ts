/**
 * `requestAPI`: calls to the nbpipe server extension through JupyterLab's `ServerConnection`
 * (auth headers, XSRF, base URL), and `ServerApi`, the `NbpipeApi` built on it. Failures are
 * thrown as `NbpipeResponseError` (a `ServerConnection.ResponseError`) whose message starts with
 * `[nbpipe]` and carries the server's `hint` and notebook `cell`.
 *
 * Non-goals: retries (the model decides), caching.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type {
  ExportFormat,
  ExportResult,
  NbpipeApi,
  NotebookAnalysis,
  RunnerSettings,
  RunnerStatus
} from './api';
import { asEvent, eventId, JSONValue, RunEvent, RunSnapshot, RunSummary } from './events';
import type { CompareTable, DashboardApi, Lineage, RunFilters, RunPage } from './dashboard_api';
import type { RunStorageAnswer, RunStorageApi } from './archivemodel';
import { SseParser } from './sse';

/** A failed request to the server extension, with the fix and the notebook cell when known. */
export class NbpipeResponseError extends ServerConnection.ResponseError {
  constructor(
    response: Response,
    message: string,
    readonly hint: string = '',
    readonly cell: number | null = null
  ) {
    super(response, `[nbpipe] ${message}`);
  }
}

async function failure(response: Response): Promise<NbpipeResponseError> {
  const text = await response.text();
  let message = text || `${response.status} ${response.statusText}`;
  let hint = '';
  let cell: number | null = null;
  try {
    const body = JSON.parse(text) as { message?: unknown; hint?: unknown; cell?: unknown; reason?: unknown };
    if (typeof body.message === 'string' && body.message) {
      message = body.message;
    } else if (typeof body.reason === 'string' && body.reason) {
      message = body.reason;
    }
    hint = typeof body.hint === 'string' ? body.hint : '';
    cell = typeof body.cell === 'number' ? body.cell : null;
  } catch {
    // not JSON: keep the text, unless it is a web page (Jupyter's own 404 page, a proxy's error page)
    if (/^\s*</.test(text)) {
      ({ message, hint } = htmlFailure(response));
    }
  }
  if (response.status === 403 || response.status === 401) {
    message = `The Jupyter server refused the request (${response.status}): ${message}`;
  }
  return new NbpipeResponseError(response, message, hint, cell);
}

/**
 * What an HTML answer means: a 404 page is Jupyter saying it has no nbpipe server extension (the
 * panel used to show the whole page's markup as the error); any other page came from a proxy.
 */
function htmlFailure(response: Response): { message: string; hint: string } {
  if (response.status === 404) {
    return {
      message: 'The nbpipe server extension is not loaded in this Jupyter server (404 on /nbpipe/api).',
      hint: 'Install nbpipe in the environment that runs jupyter lab, check that `jupyter server extension list` shows nbpipe.lab enabled, then restart jupyter lab.'
    };
  }
  return { message: `${response.status} ${response.statusText || 'error'}: a web page instead of nbpipe's answer (a proxy in between?)`, hint: '' };
}

/** Send a request to `/nbpipe/api/{endpoint}`; return the raw response (throws on HTTP errors). */
export async function requestRaw(
  endpoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<Response> {
  const url = URLExt.join(settings.baseUrl, 'nbpipe', 'api', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(
      error instanceof TypeError ? error : new TypeError(`[nbpipe] ${String(error)}`)
    );
  }
  if (!response.ok) {
    throw await failure(response);
  }
  return response;
}

/** Send a request to `/nbpipe/api/{endpoint}` and parse the JSON answer. */
export async function requestAPI<T>(
  endpoint = '',
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const response = await requestRaw(endpoint, init, settings);
  const text = await response.text();
  if (!text) {
    return undefined as T;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new NbpipeResponseError(response, `The server answered ${endpoint} with something that is not JSON`);
  }
}

function post(body: unknown, method = 'POST'): RequestInit {
  return { method, body: JSON.stringify(body ?? {}), headers: { 'Content-Type': 'application/json' } };
}

const run = (id: string): string => `runs/${encodeURIComponent(id)}`;

/** `NbpipeApi` over HTTP to the server extension. */
export class ServerApi implements NbpipeApi, DashboardApi, RunStorageApi {
  constructor(private readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  private json<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
    return requestAPI<T>(endpoint, init, this.serverSettings);
  }

  status(): Promise<RunnerStatus> {
    return this.json('status');
  }

  settings(): Promise<RunnerSettings> {
    return this.json('settings');
  }

  saveSettings(runnerUrl: string | null, token?: string | null): Promise<RunnerSettings> {
    const body: Record<string, string | null> = { runner_url: runnerUrl };
    if (token !== undefined) {
      body.token = token;
    }
    return this.json('settings', post(body, 'PUT'));
  }

  analyze(path: string, pipeline?: string | null, content?: Record<string, unknown> | null): Promise<NotebookAnalysis> {
    return this.json('notebook/analyze', post({ path, pipeline: pipeline ?? null, ...(content ? { content } : {}) }));
  }

  exportNotebook(path: string, format: ExportFormat, pipeline?: string | null, image?: string | null): Promise<ExportResult> {
    return this.json('notebook/export', post({ path, format, pipeline: pipeline ?? null, image: image || null }));
  }

  runNotebook(path: string, params: Record<string, JSONValue>, pipeline?: string | null): Promise<RunSnapshot> {
    return this.json('notebook/run', post({ path, params, pipeline: pipeline ?? null }));
  }

  async runs(limit = 50): Promise<RunSummary[]> {
    const body = await this.json<{ runs: RunSummary[] }>(`runs?limit=${limit}`);
    return body.runs;
  }

  run(id: string): Promise<RunSnapshot> {
    return this.json(run(id));
  }

  async cancel(id: string): Promise<void> {
    await this.json(`${run(id)}/cancel`, post({}));
  }

  rerun(id: string, fromStep?: string | null): Promise<RunSnapshot> {
    return this.json(`${run(id)}/rerun`, post({ from_step: fromStep ?? null }));
  }

  async logs(id: string, step: string, attempt?: number | null): Promise<string> {
    const query = attempt ? `?attempt=${attempt}` : '';
    const response = await requestRaw(`${run(id)}/steps/${encodeURIComponent(step)}/logs${query}`, {}, this.serverSettings);
    return response.text();
  }

  async artifact(digest: string, mime: string): Promise<Blob> {
    const response = await requestRaw(`artifacts/${digest}?mime=${encodeURIComponent(mime)}`, {}, this.serverSettings);
    return response.blob();
  }

  events(
    id: string,
    after: number,
    onEvent: (event: RunEvent) => void,
    signal: AbortSignal
  ): Promise<number> {
    return streamEvents(`${run(id)}/events?after=${after}`, after, onEvent, signal, this.serverSettings);
  }

  // ------------------------------------------------------------ dashboard (nbpipe/lab/dashboard.py)

  runPage(filters: RunFilters, offset: number, limit: number, facets: boolean, archived = false): Promise<RunPage> {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(filters)) {
      if (value) {
        query.set(key, value);
      }
    }
    query.set('offset', String(offset));
    query.set('limit', String(limit));
    if (facets) {
      query.set('facets', '1');
    }
    if (archived) {
      query.set('archived', 'true');
    }
    return this.json(`dashboard/runs?${query.toString()}`);
  }

  archiveRun(id: string): Promise<RunStorageAnswer> {
    return this.json(`${run(id)}/archive`, post({}));
  }

  unarchiveRun(id: string): Promise<RunStorageAnswer> {
    return this.json(`${run(id)}/unarchive`, post({}));
  }

  deleteRun(id: string): Promise<RunStorageAnswer> {
    return this.json(run(id), { method: 'DELETE' });
  }

  allEvents(after: number, onEvent: (event: RunEvent) => void, signal: AbortSignal): Promise<number> {
    return streamEvents(`dashboard/events?after=${after}`, after, onEvent, signal, this.serverSettings);
  }

  compare(ids: string[]): Promise<CompareTable> {
    return this.json(`dashboard/compare?runs=${ids.map(encodeURIComponent).join(',')}`);
  }

  lineage(runId: string, step: string, output?: string | null): Promise<Lineage> {
    const query = output ? `?output=${encodeURIComponent(output)}` : '';
    return this.json(`dashboard/lineage/${encodeURIComponent(runId)}/${encodeURIComponent(step)}${query}`);
  }
}

/**
 * Read an SSE endpoint of the server extension, calling `onEvent` per event; resolves with the last id.
 * An event of a type this extension does not know (a newer runner's) is skipped, but its id still
 * counts: a resumed stream starts after it.
 */
export async function streamEvents(
  endpoint: string,
  after: number,
  onEvent: (event: RunEvent) => void,
  signal: AbortSignal,
  settings: ServerConnection.ISettings
): Promise<number> {
  const response = await requestRaw(endpoint, { signal }, settings);
  let last = after;
  if (!response.body) {
    return last;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      for (const frame of parser.push(decoder.decode(value, { stream: true }))) {
        const data: unknown = JSON.parse(frame.data);
        const event = asEvent(data);
        if (event) {
          last = Math.max(last, event.id);
          onEvent(event);
        } else {
          last = Math.max(last, eventId(data, frame.id));
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
  return last;
}

