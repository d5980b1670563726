/**
 * The typed parameter form: one row per pipeline parameter (number, checkbox, text or JSON
 * field with its default), writing what the user types into the model.
 *
 * Non-goals: parsing and validation (params.ts), submitting (the model).
 */

import { h } from './dom';
import { baseType, fieldKind, isRequired, Parameter, RawValue } from './params';

export interface FormState {
  parameters: readonly Parameter[];
  raws: Readonly<Record<string, RawValue>>;
  errors: Readonly<Record<string, string>>;
}

/** Render the form into `host`; `onInput` gets each change; Enter in a field calls `onSubmit`. */
export function renderParamForm(
  host: HTMLElement,
  state: FormState,
  onInput: (name: string, raw: RawValue) => void,
  onSubmit: () => void
): void {
  const focused = document.activeElement instanceof HTMLElement ? document.activeElement.dataset.param : undefined;
  const rows = state.parameters.map(p => row(p, state, onInput, onSubmit));
  host.replaceChildren(
    ...(rows.length ? rows : [h('p', { class: 'nbp-muted', text: 'This pipeline takes no parameters.' })])
  );
  if (focused) {
    host.querySelector<HTMLElement>(`[data-param="${CSS.escape(focused)}"]`)?.focus();
  }
}

function row(
  p: Parameter,
  state: FormState,
  onInput: (name: string, raw: RawValue) => void,
  onSubmit: () => void
): HTMLElement {
  const id = `nbp-param-${p.name}`;
  const kind = fieldKind(p.type);
  const raw = p.name in state.raws ? state.raws[p.name] : '';
  const error = state.errors[p.name];
  let input: HTMLInputElement | HTMLTextAreaElement;
  if (kind === 'boolean') {
    input = h('input', { type: 'checkbox', id, class: 'nbp-checkbox' });
    input.checked = raw === true;
    input.addEventListener('change', () => onInput(p.name, (input as HTMLInputElement).checked));
  } else if (kind === 'json') {
    input = h('textarea', { id, class: 'jp-mod-styled nbp-input nbp-json', 'aria-label': p.name });
    input.rows = 2;
    input.spellcheck = false;
    input.value = String(raw);
    input.addEventListener('input', () => onInput(p.name, input.value));
  } else {
    input = h('input', { id, class: 'jp-mod-styled nbp-input', type: 'text' });
    input.inputMode = kind === 'integer' ? 'numeric' : kind === 'number' ? 'decimal' : 'text';
    input.spellcheck = false;
    input.value = String(raw);
    input.placeholder = isRequired(p) ? 'required' : baseType(p.type).optional ? 'None' : '';
    input.addEventListener('input', () => onInput(p.name, input.value));
    input.addEventListener('keydown', ev => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        onSubmit();
      }
    });
  }
  input.dataset.param = p.name;
  if (error) {
    input.setAttribute('aria-invalid', 'true');
    input.setAttribute('aria-describedby', `${id}-error`);
  }
  const label = h(
    'label',
    { for: id, class: 'nbp-param-label' },
    h('span', { class: 'nbp-param-name', text: p.name }),
    h('span', { class: 'nbp-type', text: p.type })
  );
  return h(
    'div',
    { class: `nbp-param nbp-param-${kind}${error ? ' nbp-invalid' : ''}`, 'data-name': p.name },
    label,
    input,
    error ? h('div', { class: 'nbp-field-error', id: `${id}-error`, role: 'alert', text: error }) : null
  );
}
