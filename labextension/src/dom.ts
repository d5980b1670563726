/**
 * `h()`: build DOM elements from a tag, properties and children. Text only ever reaches the DOM
 * as text nodes (names, messages and values come from notebooks and runs, so never as HTML).
 *
 * Non-goals: diffing or a component model; each view re-renders its own small subtree.
 */

export type Child = Node | string | null | undefined | false;

export interface Props {
  class?: string;
  text?: string;
  title?: string;
  hidden?: boolean;
  type?: string;
  disabled?: boolean;
  onclick?: (ev: MouseEvent) => void;
  [attribute: `data-${string}` | `aria-${string}`]: string | undefined;
  role?: string;
  tabindex?: string;
  for?: string;
  id?: string;
  colspan?: string;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (key === 'class') {
      el.className = String(value);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (key === 'onclick') {
      el.addEventListener('click', value as EventListener);
    } else if (key === 'hidden') {
      el.hidden = true;
    } else if (key === 'disabled') {
      (el as HTMLButtonElement).disabled = true;
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      el.append(child);
    }
  }
  return el;
}

/** A JupyterLab-styled button. */
export function button(label: string, onclick: () => void, props: Props & { accept?: boolean } = {}): HTMLButtonElement {
  const { accept, class: cls, ...rest } = props;
  const classes = ['jp-Button', 'nbp-button', accept ? 'jp-mod-accept nbp-mod-accept' : 'jp-mod-styled'];
  if (cls) {
    classes.push(cls);
  }
  return h('button', { type: 'button', class: classes.join(' '), text: label, onclick: () => onclick(), ...rest });
}
