/**
 * Compare runs without the DOM: the parameter rows (with the ones that differ), the metric rows
 * (with the best run per metric) and the bars of a metric chart, from `GET dashboard/compare`
 * (the same columns as `nbpipe compare`).
 *
 * Non-goals: DOM (compare.ts), statistics beyond best/worst.
 */

import type { CompareTable } from './dashboard_api';
import type { JSONValue } from './events';
import { formatValue } from './format';

export interface ParamRow {
  name: string;
  /** Display text per run ('' when the run has no such parameter). */
  values: string[];
  differs: boolean;
}

export interface MetricRow {
  name: string;
  values: Array<number | null>;
  /** Lower is better (losses, errors) rather than higher (accuracy, scores). */
  lowerIsBetter: boolean;
  /** Index of the best run, or -1 when fewer than two runs have a value or all are equal. */
  best: number;
}

export interface Bar {
  run: number;
  value: number | null;
  /** Bar length as a fraction of the chart (0..1); 0 for a missing value. */
  fraction: number;
}

const LOWER = /(loss|error|err$|mse|mae|rmse|mape|perplexity|latency|duration|time$)/i;

/** A parameter's value in full; a Python float (the run's `float_params`) keeps its `.0`. */
function show(value: JSONValue | undefined, isFloat: boolean): string {
  return value === undefined ? '' : formatValue(value, Number.POSITIVE_INFINITY, isFloat);
}

export function paramRows(table: CompareTable): ParamRow[] {
  const differ = new Set(table.differ);
  return table.params.map(name => ({
    name,
    values: table.runs.map(r => show(r.params[name], (r.float_params ?? []).includes(name))),
    differs: differ.has(name)
  }));
}

export function metricRows(table: CompareTable): MetricRow[] {
  return table.metrics.map(name => {
    const values = table.runs.map(r => (typeof r.metrics[name] === 'number' ? r.metrics[name] : null));
    const lowerIsBetter = LOWER.test(name);
    const present = values.map((v, i) => [v, i] as const).filter((p): p is readonly [number, number] => p[0] !== null);
    let best = -1;
    if (present.length >= 2 && new Set(present.map(p => p[0])).size > 1) {
      best = present.reduce((a, b) => ((lowerIsBetter ? b[0] < a[0] : b[0] > a[0]) ? b : a))[1];
    }
    return { name, values, lowerIsBetter, best };
  });
}

/** Bars for one metric: from 0 when every value is ≥ 0, else from the smallest value. */
export function bars(values: Array<number | null>): Bar[] {
  const present = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (!present.length) {
    return values.map((_, run) => ({ run, value: null, fraction: 0 }));
  }
  const lo = Math.min(0, ...present);
  const hi = Math.max(...present);
  const span = hi - lo || Math.abs(hi) || 1;
  return values.map((value, run) => ({
    run,
    value,
    fraction: value === null || !Number.isFinite(value) ? 0 : Math.max(0.02, (value - lo) / span)
  }));
}

/** Numbers as people read them in a table: 4 significant digits, no exponent for ordinary sizes. */
export function formatMetric(value: number | null): string {
  if (value === null || !Number.isFinite(value)) {
    return '—';
  }
  if (Number.isInteger(value) && Math.abs(value) < 1e9) {
    return String(value);
  }
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) {
    return value.toExponential(3);
  }
  return String(Number(value.toPrecision(4)));
}
