/**
 * Pipeline parameters as form fields: which input a type gets, the text a default shows as, and
 * turning what the user typed back into a typed JSON value (with a message naming the problem).
 * Types are the names `nbpipe/signature.py` gives them (`int`, `float`, `bool`, `str`,
 * `list[int]`, `dict[str, float]`, `Optional[int]`, `any`, ...).
 *
 * Non-goals: drawing the form (paramform.ts does), deep element checks of lists (the runner
 * checks values against the pipeline again).
 */

import type { JSONValue } from './events';

/** A pipeline parameter as the server extension reports it (from the package spec). */
export interface Parameter {
  name: string;
  type: string;
  default?: JSONValue;
}

export type FieldKind = 'integer' | 'number' | 'boolean' | 'text' | 'json' | 'any';

/** What the user entered: text for most fields, a boolean for checkboxes. */
export type RawValue = string | boolean;

export type Parsed = { ok: true; value: JSONValue } | { ok: false; error: string };

/** `Optional[list[int]]` → `{ base: 'list', optional: true }`. */
export function baseType(type: string): { base: string; optional: boolean } {
  let t = type.trim();
  let optional = false;
  const m = /^Optional\[(.*)\]$/.exec(t);
  if (m) {
    t = m[1];
    optional = true;
  }
  return { base: t.split('[', 1)[0], optional };
}

export function fieldKind(type: string): FieldKind {
  switch (baseType(type).base) {
    case 'int':
      return 'integer';
    case 'float':
      return 'number';
    case 'bool':
      return 'boolean';
    case 'str':
      return 'text';
    case 'list':
    case 'dict':
      return 'json';
    default:
      return 'any';
  }
}

export function isRequired(param: Parameter): boolean {
  return !('default' in param) && !baseType(param.type).optional;
}

/** The value a field starts with: the default, shown the way the user would type it. */
export function initialRaw(param: Parameter): RawValue {
  const kind = fieldKind(param.type);
  const value = param.default;
  if (kind === 'boolean') {
    return value === true;
  }
  if (value === undefined || value === null) {
    return '';
  }
  if (kind === 'json' || (kind === 'any' && typeof value !== 'string')) {
    return JSON.stringify(value);
  }
  return kind === 'number' ? formatFloat(value) : String(value);
}

/**
 * A float the way Python writes it: JSON turns `1.0` into the JS number 1, so a parameter
 * declared `float` shows `1.0`, not `1` (which reads as an int).
 */
export function formatFloat(value: JSONValue): string {
  return typeof value === 'number' && Number.isInteger(value) && Math.abs(value) < 1e16 ? value.toFixed(1) : String(value);
}

/** Turn what was entered into the parameter's JSON value. */
export function parseRaw(param: Parameter, raw: RawValue): Parsed {
  const kind = fieldKind(param.type);
  const { base, optional } = baseType(param.type);
  if (kind === 'boolean') {
    return { ok: true, value: raw === true || raw === 'true' };
  }
  const text = String(raw).trim();
  if (text === '') {
    if ('default' in param && param.default !== undefined) {
      return { ok: true, value: param.default };
    }
    if (optional) {
      return { ok: true, value: null };
    }
    return kind === 'text'
      ? { ok: true, value: '' }
      : { ok: false, error: `${param.name} is required (${param.type})` };
  }
  switch (kind) {
    case 'integer': {
      if (!/^[+-]?\d+$/.test(text)) {
        return { ok: false, error: `${param.name} must be a whole number, not "${text}"` };
      }
      const n = Number(text);
      return Number.isSafeInteger(n)
        ? { ok: true, value: n }
        : { ok: false, error: `${param.name} is too large for an exact integer` };
    }
    case 'number': {
      const n = Number(text);
      return Number.isFinite(n)
        ? { ok: true, value: n }
        : { ok: false, error: `${param.name} must be a number, not "${text}"` };
    }
    case 'text':
      return { ok: true, value: String(raw) };
    case 'json': {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        return { ok: false, error: `${param.name} must be JSON (${param.type}), e.g. ${example(base)}` };
      }
      const isList = Array.isArray(value);
      const isDict = typeof value === 'object' && value !== null && !isList;
      if ((base === 'list' && !isList) || (base === 'dict' && !isDict)) {
        return { ok: false, error: `${param.name} must be a JSON ${base === 'list' ? 'list' : 'object'}, e.g. ${example(base)}` };
      }
      return { ok: true, value: value as JSONValue };
    }
    default: {
      // `any`: JSON when it parses (numbers, lists, true/false), else the text itself.
      try {
        return { ok: true, value: JSON.parse(text) as JSONValue };
      } catch {
        return { ok: true, value: String(raw) };
      }
    }
  }
}

function example(base: string): string {
  return base === 'list' ? '[1, 2, 3]' : '{"key": 1}';
}

/** Parse every field; `errors` maps parameter names to messages (empty when all are valid). */
export function collectParams(
  params: readonly Parameter[],
  raws: Readonly<Record<string, RawValue>>
): { values: Record<string, JSONValue>; errors: Record<string, string> } {
  const values: Record<string, JSONValue> = {};
  const errors: Record<string, string> = {};
  for (const p of params) {
    const raw = p.name in raws ? raws[p.name] : initialRaw(p);
    const parsed = parseRaw(p, raw);
    if (parsed.ok) {
      values[p.name] = parsed.value;
    } else {
      errors[p.name] = parsed.error;
    }
  }
  return { values, errors };
}
