/**
 * Text the panel shows: durations, relative times, parameter summaries, and errors turned into
 * a headline plus the fix (with the notebook cell when the server names one).
 *
 * Non-goals: DOM work; translations.
 */

import type { JSONValue, RunSummary } from './events';
import { formatFloat } from './params';

/** A failure as the panel shows it. */
export interface ErrorInfo {
  message: string;
  hint: string;
  cell: number | null;
}

/**
 * `420 ms`, `4.2 s`, `12 s`, `3 min 05 s`, `2 h 01 min`; empty for null. The run view
 * (`run_view_state.js`) says the same: a run's header said "231 ms" and the Runs list "0.2 s".
 */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    return '';
  }
  if (seconds < 0.9995) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 9.95) {
    return `${seconds.toFixed(1)} s`;
  }
  if (seconds < 59.5) {
    return `${Math.round(seconds)} s`;
  }
  const t = Math.round(seconds);
  const m = Math.floor(t / 60);
  if (m < 60) {
    return `${m} min ${String(t % 60).padStart(2, '0')} s`;
  }
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** `just now`, `5 min ago`, `3 h ago`, else a date. `now` and `then` are Unix seconds. */
export function formatAgo(then: number, now: number): string {
  const d = Math.max(0, now - then);
  if (d < 45) {
    return 'just now';
  }
  if (d < 3600) {
    return `${Math.round(d / 60)} min ago`;
  }
  if (d < 86400) {
    return `${Math.round(d / 3600)} h ago`;
  }
  return new Date(then * 1000).toISOString().slice(0, 10);
}

// Times of day read on a 24-hour clock everywhere, in the user's locale otherwise (date order,
// separators): the runner names runs "digits 2026-11-30 19:02:03" and the CLI prints 24-hour times,
// and the run page's tab said "07:02:03 PM" next to them (en-US).
const CLOCK: Intl.DateTimeFormatOptions = { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' };

/** `19:02:03` (the locale's separators): a time of day, from Unix seconds. */
export function formatClock(then: number, locale?: string): string {
  return new Date(then * 1000).toLocaleTimeString(locale, CLOCK);
}

/** `Nov 30, 2026, 19:02:03` (in the locale's order): a date and time, from Unix seconds. */
export function formatWhen(then: number, locale?: string): string {
  return new Date(then * 1000).toLocaleString(locale, { year: 'numeric', month: 'short', day: 'numeric', ...CLOCK });
}

/**
 * A compact value: strings as they are, the rest as JSON, cut to `limit` characters. A Python
 * float (`isFloat`) keeps its `.0`: JSON made 1.0 the JS number 1.
 */
export function formatValue(value: JSONValue, limit = 24, isFloat = false): string {
  const text = typeof value === 'string' ? value : isFloat ? formatFloat(value) : JSON.stringify(value);
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

/** `n=3, scale=1.0`: the run's parameters on one line; `floats` names the float ones (the answer's `float_params`). */
export function formatParams(params: Record<string, JSONValue>, limit = 24, floats: readonly string[] = []): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${formatValue(v, limit, floats.includes(k))}`)
    .join(', ');
}

/** The notebook a run came from: the label the panel sets, or the one a kernel's run carries. */
export function runNotebook(run: Pick<RunSummary, 'labels'>): string | undefined {
  return run.labels?.notebook ?? run.labels?.kernel_notebook;
}

/** The notebook a run came from (its file name), or the pipeline name. */
export function runSource(run: Pick<RunSummary, 'labels' | 'pipeline'>): string {
  const notebook = runNotebook(run);
  return notebook ? notebook.split('/').pop() ?? notebook : run.pipeline;
}

/** The first failed step of a run summary's counts, if the run failed. */
export function hasFailedSteps(run: Pick<RunSummary, 'step_counts'>): boolean {
  return (run.step_counts?.failed ?? 0) > 0;
}

const PREFIX = '[nbpipe] ';

/** Read any thrown value (a `ResponseError` from request.ts, an Error, a string) as an ErrorInfo. */
export function errorInfo(err: unknown): ErrorInfo {
  let message: string;
  let hint = '';
  let cell: number | null = null;
  if (err instanceof Error) {
    message = err.message;
    const extra = err as Error & { hint?: unknown; cell?: unknown };
    hint = typeof extra.hint === 'string' ? extra.hint : '';
    cell = typeof extra.cell === 'number' ? extra.cell : null;
  } else {
    message = String(err);
  }
  if (message.startsWith(PREFIX)) {
    message = message.slice(PREFIX.length);
  }
  // The server's message already ends with the hint; show the hint once, on its own line.
  if (hint && message.endsWith(hint)) {
    message = message.slice(0, message.length - hint.length).trim();
  }
  return { message, hint, cell };
}
