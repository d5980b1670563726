/**
 * `nbpipe:endpoints`: the Endpoints page in JupyterLab's main area — the runner's model-serving
 * endpoints (state, versions, URL) with a test-request form, rollback and delete — and its
 * command (palette: "nbpipe: Endpoints"), restored on reload.
 *
 * Non-goals: state (endpointsmodel.ts), deploying (that comes from a kernel or a run).
 */

import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, WidgetTracker } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import type { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { confirmAction } from './confirm';
import { button, h } from './dom';
import {
  emptyListText,
  EndpointInfo,
  EndpointsApi,
  EndpointsModel,
  EndpointsState,
  EXAMPLE_REQUEST,
  InferAnswer
} from './endpointsmodel';
import type { JSONValue } from './events';
import { formatAgo } from './format';
import { nbpipeIcon } from './icons';
import { requestAPI } from './request';

export const EndpointsCommands = { open: 'nbpipe:open-endpoints' } as const;

const json = (body: unknown, method = 'POST'): RequestInit => ({
  method,
  body: JSON.stringify(body ?? {}),
  headers: { 'Content-Type': 'application/json' }
});

/** `EndpointsApi` over HTTP to the server extension. */
export class EndpointsHttp implements EndpointsApi {
  constructor(private readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  async endpoints(): Promise<EndpointInfo[]> {
    return (await requestAPI<{ endpoints: EndpointInfo[] }>('endpoints', {}, this.settings)).endpoints;
  }

  infer(name: string, request: JSONValue, version: string | null): Promise<InferAnswer> {
    return requestAPI(`endpoints/${encodeURIComponent(name)}/infer`, json({ request, version }), this.settings);
  }

  rollback(name: string, version: string | null): Promise<EndpointInfo> {
    return requestAPI(`endpoints/${encodeURIComponent(name)}/rollback`, json({ version }), this.settings);
  }

  async deleteEndpoint(name: string): Promise<void> {
    await requestAPI(`endpoints/${encodeURIComponent(name)}`, { method: 'DELETE' }, this.settings);
  }
}

const STATE_ICONS: Record<string, string> = { ready: '●', starting: '○', updating: '○', restarting: '↻', failed: '✗' };

export class EndpointsPage extends Widget {
  private readonly list = h('tbody');
  private readonly error = h('div', { class: 'nbp-endpoints-error', role: 'alert' });
  private readonly form = h('div', { class: 'nbp-endpoints-form' });
  private readonly input = h('textarea', {
    class: 'jp-mod-styled nbp-endpoints-input',
    'aria-label': 'Test request: a JSON array or a v2 request'
  });
  private readonly versionSelect = h('select', { class: 'jp-mod-styled nbp-select', 'aria-label': 'Version' });
  private readonly sendButton: HTMLButtonElement;
  private readonly output = h('pre', { class: 'nbp-endpoints-output', 'aria-live': 'polite' });
  private readonly heading = h('h3', { class: 'nbp-endpoints-heading' });
  private readonly unsubscribe: () => void;

  constructor(readonly model: EndpointsModel) {
    super();
    this.id = 'nbpipe-endpoints';
    this.addClass('nbp-endpoints-page');
    this.title.label = 'Endpoints';
    this.title.caption = 'nbpipe: model-serving endpoints';
    this.title.icon = nbpipeIcon;
    this.title.closable = true;
    this.input.value = EXAMPLE_REQUEST;
    this.input.rows = 6;
    this.sendButton = button('Send', () => void this.model.send(this.input.value), { accept: true, class: 'nbp-endpoints-send' });
    this.versionSelect.addEventListener('change', () => this.model.chooseVersion(this.versionSelect.value || null));
    const table = h(
      'table',
      { class: 'nbp-endpoints-table' },
      h('thead', {}, h('tr', {}, ...['Endpoint', 'Serving', 'Versions', 'State', 'URL', 'Updated'].map(t => h('th', { text: t })))),
      this.list
    );
    this.form.append(
      this.heading,
      h('label', { class: 'nbp-endpoints-label', text: 'Version' }, this.versionSelect),
      h('div', { class: 'nbp-endpoints-hint', text: 'Inputs: a JSON array (sent as one tensor) or a KServe v2 request {"inputs": [{name, shape, datatype, data}]}' }),
      this.input,
      h(
        'div',
        { class: 'nbp-endpoints-actions' },
        this.sendButton,
        button('Roll back', () => void this.model.rollback(), { class: 'nbp-endpoints-rollback' }),
        button('Delete', () => void this.confirmDelete(), { class: 'nbp-endpoints-delete' })
      ),
      this.output
    );
    // Reload sits above the list, not in the test form: with no endpoint yet there is no form.
    const toolbar = h('div', { class: 'nbp-endpoints-toolbar' },
      button('Reload', () => void this.model.reload(), { class: 'nbp-endpoints-reload', title: 'Read the endpoints from the runner again' }));
    this.node.append(h('div', { class: 'nbp-endpoints-body' }, toolbar, this.error, table, this.form));
    this.unsubscribe = this.model.subscribe(s => this.render(s));
    this.render(this.model.state);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    void this.model.reload();
  }

  protected onActivateRequest(msg: Message): void {
    super.onActivateRequest(msg);
    void this.model.reload();
  }

  dispose(): void {
    this.unsubscribe();
    super.dispose();
  }

  /** Delete the selected endpoint once the user said so in Lab's dialog (it was the browser's confirm()). */
  private async confirmDelete(): Promise<void> {
    const name = this.model.state.selected;
    if (name && (await confirmAction('Delete endpoint?', `Delete endpoint ${name} and all its versions? Requests to it fail from then on.`, 'Delete'))) {
      await this.model.remove();
    }
  }

  private render(s: EndpointsState): void {
    this.error.textContent = s.error;
    this.error.hidden = !s.error;
    this.list.replaceChildren(
      ...(s.endpoints.length
        ? s.endpoints.map(e => {
            const row = h(
              'tr',
              {
                class: `nbp-endpoints-row${e.name === s.selected ? ' nbp-mod-selected' : ''}`,
                'data-endpoint': e.name,
                tabindex: '0',
                onclick: () => this.model.select(e.name)
              },
              h('td', { text: e.name }),
              h('td', { text: e.default_version }),
              h('td', { text: e.versions.map(v => v.version).join(', ') }),
              h('td', { class: `nbp-endpoint-state nbp-mod-${e.state}`, title: e.reason || e.state, text: `${STATE_ICONS[e.state] ?? ''} ${e.state}` }),
              h('td', { class: 'nbp-endpoints-url', text: e.infer_url ?? '' }),
              h('td', { text: formatAgo(e.updated_at, Date.now() / 1000) })
            );
            row.addEventListener('keydown', ev => {
              if (ev.key === 'Enter') {
                this.model.select(e.name);
              }
            });
            return row;
          })
        : emptyListText(s) ? [h('tr', {}, h('td', { class: 'nbp-endpoints-empty', colspan: '6', text: emptyListText(s) }))] : [])
    );
    const ep = this.model.current;
    this.form.hidden = !ep;
    if (ep) {
      this.heading.textContent = `Test ${ep.name}${ep.reason ? ` — ${ep.reason}` : ''}`;
      const options = [h('option', { text: `default (${ep.default_version})` }), ...ep.versions.map(v => h('option', { text: v.version }))];
      (options[0] as HTMLOptionElement).value = '';
      this.versionSelect.replaceChildren(...options);
      this.versionSelect.value = s.version ?? '';
    }
    this.sendButton.disabled = s.busy || !ep;
    if (s.result) {
      this.output.textContent = s.result.ok ? `${s.result.text}\n(${s.result.ms.toFixed(0)} ms)` : s.result.text;
      this.output.className = `nbp-endpoints-output ${s.result.ok ? 'nbp-mod-ok' : 'nbp-mod-error'}`;
    } else {
      this.output.textContent = '';
      this.output.className = 'nbp-endpoints-output';
    }
  }
}

export const endpointsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'nbpipe:endpoints',
  description: 'The Endpoints page: model-serving endpoints with a test-request form.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null, palette: ICommandPalette | null): void => {
    const api = new EndpointsHttp(app.serviceManager.serverSettings);
    const tracker = new WidgetTracker<EndpointsPage>({ namespace: 'nbpipe-endpoints' });
    app.commands.addCommand(EndpointsCommands.open, {
      label: 'nbpipe: Endpoints',
      caption: 'Model-serving endpoints: versions, a test request, rollback',
      execute: () => {
        let page = tracker.currentWidget;
        if (!page || page.isDisposed) {
          page = new EndpointsPage(new EndpointsModel(api));
          void tracker.add(page);
          app.shell.add(page, 'main');
        }
        app.shell.activateById(page.id);
        return page;
      }
    });
    palette?.addItem({ command: EndpointsCommands.open, category: 'nbpipe' });
    if (restorer) {
      void restorer.restore(tracker, { command: EndpointsCommands.open, name: () => 'endpoints' });
    }
  }
};
