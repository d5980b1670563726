/**
 * The nbpipe sidebar: the active notebook's pipeline (components, parameter form, Run Pipeline,
 * Export), the live run graph drawn by the shared run view (`nbpipe/widgets/run_view.js`, the
 * same renderer as the notebook widget), the run list, and the runner's status and URL setting.
 *
 * Non-goals: state (model.ts holds it), requests (request.ts), graph drawing (run_view.js).
 */

import { Widget } from '@lumino/widgets';

import { createRunView, RunView } from '../../nbpipe/widgets/run_view.js';
import { clonedRaws } from './clone';
import { confirmCancel } from './confirm';
import { downloadOutput } from './download';
import { button, h } from './dom';
import type { RunEvent, RunSnapshot } from './events';
import type { ErrorInfo } from './format';
import { nbpipeIcon } from './icons';
import type { PanelModel, PanelState } from './model';
import { renderParamForm } from './paramform';
import { LiveRuns } from './liveruns';
import type { DashboardApi } from './dashboard_api';
import { renderRunList, tickDurations } from './runlist';

export interface PanelOptions {
  /** Select and scroll to cell `n` (1-based) of the current notebook. */
  revealCell(n: number): void;
  /** Open an exported file in JupyterLab. */
  openFile(path: string): void;
  /** Open a run's page in the main area (the dashboard plugin). */
  openRun?(id: string): void;
  /** Open the Runs page (every run, filters, compare). */
  openRuns?(): void;
}

export class NbpipePanel extends Widget {
  private readonly status = h('button', { type: 'button', class: 'nbp-status', title: 'Runner settings' });
  private readonly settingsBox = h('section', { class: 'nbp-settings', hidden: true, 'aria-label': 'Runner settings' });
  private readonly urlInput = h('input', { type: 'text', class: 'jp-mod-styled nbp-input', id: 'nbp-runner-url' });
  private readonly tokenInput = h('input', { type: 'password', class: 'jp-mod-styled nbp-input', id: 'nbp-runner-token' });
  private readonly settingsNote = h('p', { class: 'nbp-muted nbp-small-text' });
  private readonly messages = h('div', { class: 'nbp-messages', 'aria-live': 'polite' });
  private readonly kfpBox = h('section', { class: 'nbp-kfp', hidden: true, 'aria-label': 'Kubeflow export' });
  private readonly kfpImageInput = h('input', { type: 'text', class: 'jp-mod-styled nbp-input nbp-kfp-image', id: 'nbp-kfp-image' });
  private kfpKey = '';
  private readonly notebookBox = h('div', { class: 'nbp-notebook' });
  private readonly formBox = h('div', { class: 'nbp-form' });
  private readonly runButton: HTMLButtonElement;
  private readonly exportButton: HTMLButtonElement;
  private readonly kfpButton: HTMLButtonElement;
  private readonly pipelineSection = h('section', { class: 'nbp-section', 'aria-label': 'Pipeline' });
  private readonly runSection = h('section', { class: 'nbp-section nbp-run-section', hidden: true, 'aria-label': 'Run' });
  private readonly runHost = h('div', { class: 'nbp-run-host' });
  private readonly runsBox = h('div', { class: 'nbp-runs-box' });
  private readonly view: RunView;
  private readonly images = new Map<string, string>();
  private formKey = '';
  private shownRun: string | null = null;
  private runsKey = '';
  private disconnect: Array<() => void> = [];
  private readonly live: LiveRuns | null = 'allEvents' in this.model.api ? new LiveRuns(this.model.api as unknown as DashboardApi, () => void this.model.refreshRuns()) : null;
  private readonly ticker = setInterval(() => tickDurations(this.runsBox), 1000); // live durations of running runs
  // The runner's status follows the runner (stopped, restarted, back on the network) while the panel shows.
  private readonly statusPoll = setInterval(() => {
    if (this.isVisible && document.visibilityState === 'visible') {
      void this.model.refreshStatus();
    }
  }, STATUS_EVERY_MS);
  private readonly downBox = h('div', { class: 'nbp-runner-down', role: 'alert', hidden: true });

  constructor(readonly model: PanelModel, private readonly options: PanelOptions) {
    super();
    this.id = 'nbpipe-panel';
    this.addClass('nbp-panel');
    this.title.icon = nbpipeIcon;
    this.title.caption = 'nbpipe: run this notebook as a pipeline';

    this.runButton = button('Run Pipeline', () => void this.model.runPipeline(), {
      accept: true,
      class: 'nbp-run-button',
      title: 'Export the notebook’s pipeline and run it with these parameters (saves the notebook first only if it has unsaved changes)'
    });
    this.exportButton = button('Export', () => void this.exportAs('nbpipe'), {
      title: 'Write the pipeline package (.nbpipe) next to the notebook'
    });
    this.kfpButton = button('Export KFP', () => void this.exportAs('kfp'), {
      title: 'Write Kubeflow Pipelines v2 YAML next to the notebook'
    });

    this.status.addEventListener('click', () => this.toggleSettings());
    const header = h(
      'header',
      { class: 'nbp-header' },
      h('div', { class: 'nbp-title' }, h('span', { class: 'nbp-logo' }), h('span', { text: 'nbpipe' })),
      this.status
    );
    nbpipeIcon.element({ container: header.querySelector('.nbp-logo') as HTMLElement, height: '18px', width: '18px' });

    this.settingsBox.append(
      h('label', { for: 'nbp-runner-url', class: 'nbp-param-label', text: 'Runner URL' }),
      this.urlInput,
      h('label', { for: 'nbp-runner-token', class: 'nbp-param-label', text: 'Token (remote runners)' }),
      this.tokenInput,
      h(
        'div',
        { class: 'nbp-actions' },
        button('Save', () => void this.saveSettings(), { accept: true, class: 'nbp-small' }),
        button('Use embedded runner', () => void this.saveSettings(true), { class: 'nbp-small' })
      ),
      this.settingsNote
    );
    this.urlInput.placeholder = 'empty: embedded runner on 127.0.0.1';
    this.tokenInput.placeholder = 'unchanged';

    this.pipelineSection.append(
      sectionHeader('Pipeline', button('↻', () => void this.model.analyze(), { class: 'nbp-icon-button', title: 'Analyze the notebook again (as the editor shows it; nothing is saved)', 'aria-label': 'Analyze again' })),
      this.notebookBox,
      this.formBox,
      h('div', { class: 'nbp-actions nbp-main-actions' }, this.runButton, this.exportButton, this.kfpButton)
    );
    this.runSection.append(
      sectionHeader('Run', button('Open in a tab ↗', () => this.model.state.runId && this.options.openRun?.(this.model.state.runId), { class: 'nbp-small nbp-open-tab', title: 'Open this run’s page in the main area' })),
      this.runHost
    );
    const runsSection = h(
      'section',
      { class: 'nbp-section', 'aria-label': 'Runs' },
      sectionHeader('Runs', button('All runs ↗', () => this.options.openRuns?.(), { class: 'nbp-small nbp-open-runs', title: 'Every run, live: filter, search, compare' }), button('↻', () => void this.model.refreshRuns(), { class: 'nbp-icon-button', title: 'Refresh the run list', 'aria-label': 'Refresh runs' })),
      this.runsBox
    );
    this.kfpImageInput.addEventListener('change', () => this.model.setKfpImage(this.kfpImageInput.value));
    this.kfpImageInput.addEventListener('keydown', ev => {
      if (ev.key === 'Enter') {
        this.model.setKfpImage(this.kfpImageInput.value);
        void this.exportAs('kfp');
      }
    });
    header.append(this.downBox); // in the sticky header: seen wherever the panel is scrolled
    this.node.append(header, this.settingsBox, this.messages, this.kfpBox, this.pipelineSection, this.runSection, runsSection);

    this.view = createRunView(this.runHost, {
      loadLogs: (step, attempt, run) => this.model.loadLogs(step, attempt, run),
      loadImage: preview => this.loadImage(preview.digest, typeof preview.mime === 'string' ? preview.mime : 'image/png'),
      onDownload: (step, output, out) => void downloadOutput((d, m) => this.model.api.artifact(d, m), step, output, out, this.view),
      onAction: (action, payload) => {
        if (action === 'cancel') {
          void this.confirmCancel(this.model.state.runId);
        } else if (action === 'rerun') {
          void this.model.rerun();
        } else if (action === 'rerun_from') {
          void this.model.rerun(this.model.state.runId, payload.step ?? null);
        } else if (action === 'rerun_failed') {
          const id = this.model.state.runId;
          if (id) {
            void this.model.rerunFromFailed(id);
          }
        } else if (action === 'open') {
          const run = payload.run;
          if (run) {
            void this.model.openRun(run);
          }
        }
      }
    });
    this.disconnect.push(
      model.changed.connect(state => this.render(state)),
      model.snapshot.connect((snap: RunSnapshot) => {
        const fresh = snap.id !== this.shownRun;
        this.shownRun = snap.id;
        this.runSection.hidden = false;
        this.view.setSnapshot(snap);
        if (fresh) {
          requestAnimationFrame(() => this.view.fit());
        }
      }),
      model.event.connect((event: RunEvent) => void this.view.applyEvent(event))
    );
    this.render(model.state);
  }

  /** Cancel run `id` once the user said so in Lab's dialog (as Kubeflow asks before it terminates a run). */
  private async confirmCancel(id: string | null): Promise<void> {
    const run = id ? this.model.state.runs.find(r => r.id === id) : undefined;
    if (id && (await confirmCancel(id, run?.name))) {
      await this.model.cancel(id);
    }
  }

  /** Kubeflow's "Clone run": the form gets the run's parameters, scrolled to, its first field focused. */
  private cloneRun(id: string): void {
    const run = this.model.state.runs.find(r => r.id === id);
    if (!run) {
      return;
    }
    const cloned = clonedRaws(this.model.state.analysis, run);
    if ('error' in cloned) {
      this.model.fillParams({}, cloned.error);
      return;
    }
    this.formKey = ''; // the fields show the raws they were drawn with: draw them again
    this.model.fillParams(cloned.raws, cloned.note);
    this.formBox.scrollIntoView({ block: 'nearest' });
    this.formBox.querySelector<HTMLInputElement>('input, select, textarea')?.focus();
  }

  private render(state: PanelState): void {
    if (!state.runId && this.shownRun !== null) {  // another notebook's run (see PanelModel.setNotebook)
      this.shownRun = null;
      this.runSection.hidden = true;
    }
    this.renderStatus(state);
    this.renderMessages(state);
    this.renderNotebook(state);
    const parameters = state.analysis?.parameters ?? [];
    const key = JSON.stringify([state.analysis?.digest, parameters, state.fieldErrors]);
    if (key !== this.formKey) {
      this.formKey = key;
      renderParamForm(
        this.formBox,
        { parameters, raws: state.raws, errors: state.fieldErrors },
        (name, raw) => this.model.setParam(name, raw),
        () => void this.model.runPipeline()
      );
    }
    this.formBox.hidden = !state.analysis?.pipeline;
    const ready = Boolean(state.analysis?.pipeline) && !state.analyzing;
    this.runButton.disabled = !ready || state.submitting;
    this.runButton.textContent = state.submitting ? 'Starting…' : 'Run Pipeline';
    this.exportButton.disabled = !ready;
    this.kfpButton.disabled = !ready;
    const runsKey = JSON.stringify([state.runs.map(r => [r.id, r.state, r.duration]), state.runId, state.runsError]);
    if (runsKey !== this.runsKey) {
      this.runsKey = runsKey;
      if (state.runsError) {
        this.runsBox.replaceChildren(errorBox(state.runsError, null));
      } else {
        renderRunList(this.runsBox, state.runs, state.runId, {
          open: id => void this.model.openRun(id),
          cancel: id => void this.confirmCancel(id),
          rerun: id => void this.model.rerun(id),
          rerunFromFailed: id => void this.model.rerunFromFailed(id),
          clone: id => this.cloneRun(id)
        });
      }
    }
  }

  private renderStatus(state: PanelState): void {
    const s = state.status;
    let text = 'Runner: checking…';
    let cls = 'nbp-status-unknown';
    if (s) {
      const where = s.url ? s.url.replace(/^https?:\/\//, '') : '';
      if (s.server === false) {
        text = 'Jupyter server not answering';
        cls = 'nbp-status-down';
      } else if (s.stalled) {
        text = `Runner not scheduling runs · ${where}`;
        cls = 'nbp-status-down';
      } else if (s.mode === 'embedded') {
        text = s.reachable ? `Embedded runner · ${where}` : s.url ? 'Embedded runner stopped' : 'Embedded runner · starts on first run';
        cls = s.reachable ? 'nbp-status-ok' : s.url ? 'nbp-status-down' : 'nbp-status-idle';
      } else {
        text = s.reachable ? `Runner · ${where}` : `Runner unreachable · ${where}`;
        cls = s.reachable ? 'nbp-status-ok' : 'nbp-status-down';
      }
    }
    this.renderDown(s);
    this.status.className = `nbp-status ${cls}`;
    this.status.replaceChildren(h('span', { class: 'nbp-dot', 'aria-hidden': 'true' }), h('span', { text }));
    this.status.title = s?.error ? `${text}\n${s.error}\nClick for runner settings.` : `${text}\nClick for runner settings.`;
    const settings = state.settings;
    if (settings && document.activeElement !== this.urlInput) {
      this.urlInput.value = settings.runner_url ?? '';
      this.urlInput.disabled = !settings.editable;
      this.settingsNote.textContent = settings.editable
        ? `Saved in ${settings.config_path}${settings.has_token ? ' (a token is stored)' : ''}; the notebook SDK and CLI use it too.`
        : 'Set by NBPIPE_RUNNER_URL in the Jupyter server environment.';
    }
  }

  /** While the runner (or the Jupyter server) does not answer: what happened and what to do. */
  private renderDown(s: PanelState['status']): void {
    const down = Boolean(s && (s.stalled || (!s.reachable && (s.server === false || s.mode === 'remote' || s.url))));
    const every = `${STATUS_EVERY_MS / 1000} s`;
    let what = '';
    if (s && down) {
      if (s.stalled) {
        what = `${s.error} Runs stay queued until it is restarted: nbpipe runner stop, then Run Pipeline (or nbpipe runner start); its runs resume from the database.`;
      } else if (s.server === false) {
        what = `The Jupyter server does not answer (${s.error}). Restart it (jupyter lab); the panel checks again every ${every}.`;
      } else if (s.mode === 'embedded') {
        what = `The embedded runner at ${s.url} stopped. Run Pipeline (or ↻ in Runs) starts it again; this panel checks every ${every} and reconnects by itself.`;
      } else {
        what = `The runner at ${s.url} does not answer${s.error ? ` (${s.error})` : ''}. Start it (nbpipe runner start) or change its URL (click the status above); this panel checks every ${every} and reconnects by itself.`;
      }
    }
    this.downBox.hidden = !down;
    if (this.downBox.textContent !== what) {
      this.downBox.textContent = what;
    }
  }

  private renderMessages(state: PanelState): void {
    const children: HTMLElement[] = [];
    if (state.error) {
      children.push(errorBox(state.error, n => this.options.revealCell(n), () => this.model.dismissMessages()));
    }
    if (state.notice) {
      children.push(
        h('div', { class: 'nbp-notice', role: 'status' }, h('span', { text: state.notice }), dismiss(() => this.model.dismissMessages()))
      );
    }
    this.messages.replaceChildren(...children);
    this.renderKfp(state);
  }

  /** After Export KFP: the images the YAML references, how to build and push them, and the image to use. */
  private renderKfp(state: PanelState): void {
    const kfp = state.kfp;
    if (document.activeElement !== this.kfpImageInput) {
      this.kfpImageInput.value = state.kfpImage;
    }
    const key = JSON.stringify(kfp);
    if (key === this.kfpKey) {
      return;
    }
    this.kfpKey = key;
    this.kfpBox.hidden = !kfp;
    if (!kfp) {
      this.kfpBox.replaceChildren();
      return;
    }
    const python = kfp.images.find(i => i.default)?.python ?? '';
    this.kfpImageInput.placeholder = `REGISTRY/nbpipe-base:py${python || '3.x'} (empty: nbpipe/base)`;
    this.kfpBox.replaceChildren(
      h(
        'div',
        { class: 'nbp-kfp-head' },
        h('span', { class: 'nbp-kfp-title', text: `Kubeflow YAML · ${kfp.path.split('/').pop()}` }),
        dismiss(() => this.model.dismissKfp())
      ),
      h('ul', { class: 'nbp-kfp-images' }, ...kfp.images.map(i => h('li', { class: 'nbp-kfp-ref', 'data-default': String(i.default) }, h('code', { text: i.image }), ` · ${i.steps.length} step${i.steps.length === 1 ? '' : 's'} · Python ${i.python}`))),
      // The note's indented lines are commands (copyable, in code font); the rest is prose.
      h('div', { class: 'nbp-kfp-note' }, ...kfp.note.split('\n').map(line => (line.startsWith('  ') ? h('pre', { class: 'nbp-kfp-cmd', text: line.trim() }) : h('p', { text: line })))),
      h('label', { for: 'nbp-kfp-image', class: 'nbp-param-label', text: 'KFP image (pushed)' }),
      this.kfpImageInput,
      h(
        'div',
        { class: 'nbp-actions' },
        button('Export KFP again', () => {
          this.model.setKfpImage(this.kfpImageInput.value);
          void this.exportAs('kfp');
        }, { class: 'nbp-small nbp-kfp-again', title: 'Write the YAML again, referencing the image above' }),
        button('Open YAML', () => this.options.openFile(kfp.path), { class: 'nbp-small' })
      )
    );
  }

  private renderNotebook(state: PanelState): void {
    const box = this.notebookBox;
    if (!state.notebook) {
      box.replaceChildren(h('p', { class: 'nbp-muted', text: 'Open a notebook with %%component cells (or @nbpipe.component functions and an @nbpipe.pipeline) to run it here.' }));
      return;
    }
    const name = state.notebook.split('/').pop() ?? state.notebook;
    const head = h('div', { class: 'nbp-notebook-name', title: state.notebook }, h('span', { class: 'nbp-file', text: name }));
    if (state.analyzing) {
      box.replaceChildren(head, h('p', { class: 'nbp-muted nbp-busy', text: 'Finding components and pipeline…' }));
      return;
    }
    if (state.analysisError) {
      box.replaceChildren(head, errorBox(state.analysisError, n => this.options.revealCell(n)));
      return;
    }
    const a = state.analysis;
    if (!a) {
      box.replaceChildren(head);
      return;
    }
    if (a.pipeline === null) {
      // A normal state, not an error: say what makes a pipeline.
      box.replaceChildren(
        head,
        h(
          'div',
          { class: 'nbp-no-pipeline', role: 'status' },
          h('p', { class: 'nbp-no-pipeline-title', text: a.reason?.message ?? 'No pipeline in this notebook yet' }),
          h('p', { class: 'nbp-muted', text: a.reason?.hint ?? '' })
        )
      );
      return;
    }
    let pipeline: HTMLElement;
    if (a.pipelines.length > 1) {
      const select = h('select', { class: 'jp-mod-styled nbp-select', 'aria-label': 'Pipeline' });
      for (const p of a.pipelines) {
        const option = h('option', { text: p });
        option.value = p;
        option.selected = p === a.pipeline || p.replace(/_/g, '-') === a.pipeline; // a run names `my_pipe` my-pipe
        select.append(option);
      }
      select.addEventListener('change', () => void this.model.analyze(select.value));
      pipeline = select;
    } else {
      pipeline = h('span', { class: 'nbp-pipeline-name', text: a.pipeline });
    }
    box.replaceChildren(
      head,
      h('div', { class: 'nbp-pipeline' }, pipeline, h('span', { class: 'nbp-muted', text: `${a.steps.length} step${a.steps.length === 1 ? '' : 's'}` })),
      h(
        'div',
        { class: 'nbp-components', 'aria-label': 'Components' },
        ...a.components.map(c =>
          h('span', {
            class: 'nbp-chip',
            title: `${c.name}(${c.inputs.map(i => `${i.name}: ${i.type}`).join(', ')}) → ${c.outputs.map(o => o.type).join(', ') || 'None'}`,
            text: c.name
          })
        )
      )
    );
  }

  private async exportAs(format: 'nbpipe' | 'kfp'): Promise<void> {
    const path = await this.model.exportNotebook(format);
    if (path) {
      if (format === 'kfp') {
        this.options.openFile(path); // YAML reads well in Lab's editor; a .nbpipe package is a zip
      }
    }
  }

  private toggleSettings(): void {
    this.settingsBox.hidden = !this.settingsBox.hidden;
    if (!this.settingsBox.hidden) {
      void this.model.refreshStatus();
      this.urlInput.focus();
    }
  }

  private async saveSettings(embedded = false): Promise<void> {
    const ok = await this.model.saveRunnerUrl(embedded ? '' : this.urlInput.value, this.tokenInput.value);
    if (ok) {
      this.tokenInput.value = '';
      this.settingsBox.hidden = true;
    }
  }

  private async loadImage(digest: string, mime: string): Promise<string> {
    const known = this.images.get(digest);
    if (known) {
      return known;
    }
    const url = URL.createObjectURL(await this.model.api.artifact(digest, mime));
    this.images.set(digest, url);
    return url;
  }

  protected onResize(): void {
    if (!this.runSection.hidden) {
      this.view.fit(); // keep the whole graph in view as the sidebar is resized
    }
  }

  protected onAfterShow(): void {
    void this.live?.start(); // the run list follows the runner's events while the panel is open
    void this.model.analyze(); // the notebook may have changed while the panel was closed
    void this.model.refreshStatus();
    void this.model.refreshRuns();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.disconnect.forEach(fn => fn());
    this.view.destroy();
    this.live?.stop();
    clearInterval(this.ticker);
    clearInterval(this.statusPoll);
    this.images.forEach(url => URL.revokeObjectURL(url));
    this.model.dispose();
    super.dispose();
  }
}

const STATUS_EVERY_MS = 5000;

function sectionHeader(title: string, ...extra: HTMLElement[]): HTMLElement {
  return h('div', { class: 'nbp-section-header' }, h('h3', { text: title }), ...extra);
}

function dismiss(onclick: () => void): HTMLElement {
  return button('×', onclick, { class: 'nbp-icon-button nbp-dismiss', title: 'Dismiss', 'aria-label': 'Dismiss' });
}

function errorBox(info: ErrorInfo, revealCell: ((n: number) => void) | null, onDismiss?: () => void): HTMLElement {
  return h(
    'div',
    { class: 'nbp-error', role: 'alert' },
    h(
      'div',
      { class: 'nbp-error-body' },
      h('div', { class: 'nbp-error-message', text: info.message }),
      info.hint ? h('div', { class: 'nbp-error-hint', text: info.hint }) : null,
      info.cell !== null && revealCell
        ? button(`Go to cell ${info.cell}`, () => revealCell(info.cell as number), { class: 'nbp-small nbp-link' })
        : null
    ),
    onDismiss ? dismiss(onDismiss) : null
  );
}
