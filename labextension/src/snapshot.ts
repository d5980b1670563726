/**
 * Saved run graphs in notebooks: `nbpipe:snapshot` renders the outputs of nbpipe's `RunView`.
 *
 * A RunView output carries the widget view, an SVG snapshot of the run's last state and
 * `application/vnd.nbpipe.run-snapshot+json` ({run_id, view, state}). This renderer ranks above
 * the widget renderer (-10), so Lab picks it for those outputs; it shows the live widget while its
 * model exists (it hosts Lab's own widget renderer) and the snapshot otherwise — after a kernel
 * restart or in a fresh session, where the widget renderer alone says "model not found". A button
 * re-connects the snapshot live: the kernel makes a new RunView of the run (nbpipe.widgets.run_view
 * .reconnect) and this output shows it, without touching the notebook.
 *
 * The snapshot is shown as an <img> (no script in it can run), so the renderer is safe for
 * untrusted notebooks; an untrusted output shows only the snapshot until the user re-connects.
 * The kernel updates the snapshot when the run changes state (update_display_data with the
 * output's display id); Lab routes such a message to no cell once the cell finished, so this
 * renderer applies it to its output model itself.
 *
 * Live again after a page reload without fixed waits: the widget renderer is made once the session
 * is ready (when jupyterlab_widgets gives the notebook its widget manager), and again on a new kernel,
 * a re-connected one or a message of the model; only an output whose model never comes meets the
 * fallback timer (counted in data-fallbacks; data-live-via names the signal that made it live).
 *
 * Non-goals: drawing graphs (the kernel draws the SVG, run_view.js the live view), saving files.
 */

import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

export const SNAPSHOT_MIME = 'application/vnd.nbpipe.run-snapshot+json';
const WIDGET_MIME = 'application/vnd.jupyter.widget-view+json';
const SVG_MIME = 'image/svg+xml';
const RANK = -20; // before the widget renderer (-10): Lab asks us first for RunView outputs
const SAFE_ID = /^[A-Za-z0-9._:-]{1,200}$/;
// The fallback only: later looks at a model the widget manager said it does not have, for a
// model that comes with no signal we know of. A model that exists comes by the signals (the
// session ready, a kernel, its comm's messages); one gone for good (a restarted kernel) costs a few looks.
const LATE_RETRY_MS = [5000, 10000, 20000, 40000];
// A renderer whose widget manager is unknown (a widget extension unlike jupyterlab_widgets 3)
// may never get one: past this, count it as failed so a late look makes a new renderer.
const STALL_MS = 4000;

interface SnapshotInfo {
  run_id?: string;
  view?: string;
  state?: string;
  name?: string;
}

/** The Python that makes a live RunView of `runId` in the kernel and evaluates to its model id. */
export function reconnectExpression(runId: string, view: string): string {
  if (!SAFE_ID.test(runId) || (view !== '' && !SAFE_ID.test(view))) {
    throw new Error(`Not an nbpipe run id: ${JSON.stringify(runId)}`);
  }
  return `__import__('nbpipe.widgets.run_view', fromlist=['reconnect']).reconnect(${JSON.stringify(runId)}, ${JSON.stringify(view)})`;
}

/** `'abc'` (a Python repr of a str, as user_expressions return it) → `abc`. */
export function unrepr(text: string): string {
  const m = /^'(.*)'$|^"(.*)"$/s.exec(text.trim());
  return m ? (m[1] ?? m[2]) : text.trim();
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, style: string, text = ''): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.setAttribute('style', style);
  node.textContent = text;
  return node;
}

/** Renders one RunView output: the live widget when its model exists, else the snapshot. */
export class SnapshotRenderer extends Widget implements IRenderMime.IRenderer {
  /** `app`: the application's rendermime, whose widget renderer factory has no widget manager. */
  constructor(private readonly findPanel: (node: HTMLElement) => NotebookPanel | null,
              private readonly app: IRenderMimeRegistry | null = null) {
    super();
    this.addClass('nbpipe-snapshot-output');
    this.snap = el('div', 'display:block');
    this.snap.className = 'nbpipe-snapshot';
    const bar = el('div', 'display:flex;align-items:center;gap:8px;margin:2px 0 4px;font-size:var(--jp-ui-font-size1,12px);color:var(--jp-ui-font-color2,#555)');
    this.note = el('span', 'flex:1 1 auto');
    this.button = el('button', 'cursor:pointer;font:inherit;padding:1px 8px;border:1px solid var(--jp-border-color1,#bbb);border-radius:3px;background:var(--jp-layout-color1,#fff);color:var(--jp-ui-font-color1,#222)', '↻ Re-connect live');
    this.button.className = 'nbpipe-snapshot-reconnect';
    this.button.title = 'Follow this run live again (runs nbpipe.attach in the kernel)';
    this.button.addEventListener('click', () => void this.reconnect());
    bar.append(this.note, this.button);
    this.img = el('img', 'max-width:100%;height:auto;display:block');
    this.img.className = 'nbpipe-snapshot-image';
    this.snap.append(bar, this.img);
    this.liveHost = el('div', 'display:none');
    this.liveHost.className = 'nbpipe-snapshot-live';
    this.node.append(this.snap, this.liveHost);
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.model = model;
    this.info = (model.data[SNAPSHOT_MIME] ?? {}) as SnapshotInfo;
    const svg = model.data[SVG_MIME];
    if (typeof svg === 'string' && svg !== this.svg) {
      this.svg = svg;
      this.img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
      this.img.alt = String(model.data['text/plain'] ?? 'nbpipe run graph');
    }
    this.note.textContent = `Saved snapshot of run ${this.info.run_id ?? ''}.`;
    const widget = model.data[WIDGET_MIME] as { model_id?: string } | undefined;
    // an untrusted notebook's widget reference is not followed: only a click makes a live view
    if (model.trusted && widget?.model_id && !this.modelId) {
      this.wanted = widget.model_id;
      this.connectLive('render');
    }
  }

  protected onAfterAttach(): void {
    this.watchKernel();
    this.connectLive('attach');
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.dropLive();
    this.setKernel(null);
    super.dispose();
  }

  // ------------------------------------------------------------------ live view

  /** Show the widget `this.wanted` if its model exists (Lab's widget renderer decides).
   * `via` names the signal that asked (data-live-via once live: tests see which one made it). */
  private connectLive(via: string): void {
    const panel = this.isAttached ? this.findPanel(this.node) : null;
    if (!panel || !this.wanted || this.wanted === this.modelId) {
      return;
    }
    const session = panel.sessionContext;
    const rendermime = panel.content.rendermime;
    // A page (re)loading renders outputs before its session has a kernel; the notebook's widget
    // manager is made (and its widget renderer factory put in this rendermime) just after the
    // session is ready. A renderer made before that waits for a manager it is never given: wait
    // for the session instead, then one task for the manager's own continuation.
    if (!session.isReady) {
      this.dropLive();
      this.liveFailed = true; // the snapshot shows meanwhile; kernelChanged may come first
      if (!this.waitingSession) {
        this.waitingSession = true;
        const ready = (): void => {
          this.waitingSession = false;
          if (!this.isDisposed && this.liveFailed) {
            this.modelId = '';
            this.connectLive('session');
          }
        };
        // a session that never gets ready (the page closing) leaves the snapshot
        session.ready.then(() => setTimeout(ready, 0), () => { this.waitingSession = false; });
      }
      return;
    }
    if (!session.session?.kernel) {
      // no kernel (opened without one, or it is gone): the snapshot stays; kernelChanged re-connects
      this.dropLive();
      this.liveFailed = true;
      return;
    }
    this.dropLive();
    const modelId = this.wanted;
    this.modelId = modelId;
    const factory = rendermime.getFactory(WIDGET_MIME);
    // still the application's factory (no manager): jupyterlab_widgets failed to give this
    // notebook one; only the fallback looks again
    const noManager = factory !== undefined && factory === this.appWidgetFactory;
    let made: IRenderMime.IRenderer | null = null;
    try {
      made = noManager ? null : rendermime.createRenderer(WIDGET_MIME);
    } catch {
      // no widget renderer in this notebook
    }
    if (!made) {
      this.liveFailed = true; // the snapshot stays
      this.lookLater(modelId);
      return;
    }
    const renderer = made;
    this.live = renderer;
    Widget.attach(renderer, this.liveHost);
    // the widget renderer fills its node with the view when the model exists (now, or when the
    // widget manager restored the kernel's models: it re-renders itself then); an error leaves
    // the snapshot
    const check = (): void => {
      const shown = renderer.node.querySelector('.lm-Widget, .nbpipe-run-view') !== null && !renderer.isHidden;
      this.showLive(shown);
      if (shown) {
        this.liveFailed = false;
        this.node.dataset.liveVia = via;
      }
    };
    this.observer = new MutationObserver(check);
    this.observer.observe(renderer.node, { childList: true, subtree: false, attributes: true, attributeFilter: ['class'] });
    const text = String(this.model?.data['text/plain'] ?? '');
    this.liveFailed = false;
    const settled = (): void => {
      check();
      // the widget renderer is done and shows no view (no such model): a message of that model,
      // a new kernel or a re-connected one retries (see watchKernel, onIOPub); a render still
      // going (the manager restoring) is never restarted
      this.liveFailed = this.live === renderer && !this.hasClass('nbpipe-snapshot-is-live');
      if (this.liveFailed) {
        this.lookLater(modelId);
      }
    };
    let done = false;
    const once = (): void => {
      if (!done) {
        done = true;
        settled();
      }
    };
    void renderer
      .renderModel({
        trusted: true,
        data: { [WIDGET_MIME]: { version_major: 2, version_minor: 1, model_id: modelId }, 'text/plain': text },
        metadata: {},
        setData: () => undefined
      })
      .then(once, once);
    if (this.appWidgetFactory === undefined) {
      // whether this renderer has a manager is unknown: one still "Loading widget..." past the
      // manager's own 2 s wait for a model may wait for good; count it as failed
      setTimeout(() => {
        if (this.live === renderer && (renderer.node.textContent ?? '').startsWith('Loading widget')) {
          this.countFallback();
          once();
        }
      }, STALL_MS);
    }
  }

  /** The fallback timer: look again later, for a model that may come with no message after it. */
  private lookLater(modelId: string): void {
    const tries = this.lateRetry === modelId ? this.lateTries : 0;
    if (tries >= LATE_RETRY_MS.length) {
      return;
    }
    this.lateRetry = modelId;
    this.lateTries = tries + 1;
    const kernel = this.kernel;
    setTimeout(() => {
      if (this.liveFailed && this.wanted === modelId && this.kernel === kernel && !this.isDisposed) {
        this.countFallback();
        this.modelId = '';
        this.connectLive('retry');
      }
    }, LATE_RETRY_MS[tries]);
  }

  /** data-fallbacks: how often a fallback timer fired here (tests: 0 when the signals did it). */
  private countFallback(): void {
    this.node.dataset.fallbacks = String(Number(this.node.dataset.fallbacks ?? '0') + 1);
  }

  private showLive(live: boolean): void {
    this.liveHost.style.display = live ? 'block' : 'none';
    this.snap.style.display = live ? 'none' : 'block';
    this.toggleClass('nbpipe-snapshot-is-live', live);
  }

  private dropLive(): void {
    this.liveFailed = false;
    this.observer?.disconnect();
    this.observer = null;
    if (this.live) {
      this.live.dispose();
      this.live = null;
    }
    this.modelId = '';
    this.showLive(false);
  }

  private async reconnect(): Promise<void> {
    const runId = this.info.run_id ?? '';
    const hint = `run nbpipe.attach(${JSON.stringify(runId)}) in a cell`;
    const panel = this.findPanel(this.node);
    if (panel && !panel.sessionContext.session?.kernel) {
      // a page just loaded (or a kernel restarting) connects its session a moment later
      this.note.textContent = 'Waiting for the kernel…';
      await Promise.race([panel.sessionContext.ready, new Promise(resolve => setTimeout(resolve, 30_000))]);
    }
    const kernel = panel?.sessionContext.session?.kernel;
    if (!kernel) {
      this.note.textContent = `No kernel is running: start one (Kernel ▸ Restart), then click again, or ${hint}.`;
      return;
    }
    let expression: string;
    try {
      expression = reconnectExpression(runId, this.info.view ?? '');
    } catch (err) {
      this.note.textContent = String((err as Error).message);
      return;
    }
    this.button.disabled = true;
    this.note.textContent = `Re-connecting to run ${runId}…`;
    try {
      const future = kernel.requestExecute({
        code: '', silent: true, store_history: false, allow_stdin: false, user_expressions: { nbpipe: expression }
      });
      const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
      const result = (reply.content as { user_expressions?: Record<string, any> }).user_expressions?.nbpipe;
      if (!result || result.status !== 'ok') {
        const why = result ? `${result.ename}: ${result.evalue}` : 'the kernel did not answer';
        this.note.textContent = `Could not re-connect (${why}). Or ${hint}.`;
        return;
      }
      this.wanted = unrepr(String(result.data?.['text/plain'] ?? ''));
      this.modelId = '';
      this.connectLive('reconnect');
      this.note.textContent = `Saved snapshot of run ${runId}.`;
    } catch (err) {
      this.note.textContent = `Could not re-connect (${(err as Error).message}). Or ${hint}.`;
    } finally {
      this.button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ kernel

  /** Follow the notebook's kernel: its snapshot updates, and a restart (the live view dies). */
  private watchKernel(): void {
    const panel = this.findPanel(this.node);
    if (!panel || this.session === panel.sessionContext) {
      return;
    }
    this.session = panel.sessionContext;
    this.session.kernelChanged.connect((_, change) => {
      this.setKernel(change.newValue);
      if (change.oldValue) {
        this.dropLive(); // another kernel: this output's model died with the old one
      } else if (this.liveFailed) {
        // A page (re)loaded: the kernel connects after the outputs rendered, and its widget
        // models (a run still going) come back now; dropping the view here kept the snapshot.
        this.modelId = '';
        this.connectLive('kernel');
      }
    }, this);
    this.session.statusChanged.connect((_, status) => {
      if (status === 'restarting' || status === 'dead') {
        this.dropLive();
      }
    }, this);
    this.session.connectionStatusChanged.connect((_, status) => {
      // the widget manager restores the kernel's models on every (re-)connection: look again
      if (status === 'connected' && this.liveFailed) {
        this.modelId = '';
        this.connectLive('connected');
      }
    }, this);
    this.setKernel(this.session.session?.kernel ?? null);
  }

  private setKernel(kernel: Kernel.IKernelConnection | null): void {
    this.kernel?.iopubMessage.disconnect(this.onIOPub, this);
    this.kernel = kernel;
    kernel?.iopubMessage.connect(this.onIOPub, this);
  }

  /** The kernel replaced this output's snapshot (the run changed state): keep it in the notebook.
   * And a message of this output's widget model while the snapshot shows: the model exists now. */
  private onIOPub(_: unknown, msg: KernelMessage.IIOPubMessage): void {
    const type = msg.header.msg_type;
    if ((type === 'comm_msg' || type === 'comm_open') && this.wanted && this.liveFailed &&
        (msg.content as { comm_id?: string }).comm_id === this.wanted) {
      // Lab's widget renderer gives up after 2 s without the model ("model not found"); on a busy
      // machine the kernel's model can reach the widget manager later than that. This signal fires
      // after the manager handled the message, so the model is there: render the live view again.
      this.modelId = '';
      this.connectLive('comm');
      return;
    }
    if (type !== 'update_display_data' || !this.model || !this.info.view) {
      return;
    }
    const content = msg.content as { data?: Record<string, unknown>; metadata?: Record<string, unknown>; transient?: { display_id?: string } };
    if (content.transient?.display_id !== this.info.view || !content.data || !(SNAPSHOT_MIME in content.data)) {
      return;
    }
    if (content.data[SVG_MIME] === this.model.data[SVG_MIME] && content.data['text/plain'] === this.model.data['text/plain']) {
      return; // already applied (Lab routed it to the cell that is still running)
    }
    // keep the widget reference this output already has; the kernel's may be a re-connected one
    const data = { ...content.data, [WIDGET_MIME]: this.model.data[WIDGET_MIME] ?? content.data[WIDGET_MIME] };
    this.model.setData({ data: data as any, metadata: (content.metadata ?? {}) as any });
  }

  private model: IRenderMime.IMimeModel | null = null;
  private info: SnapshotInfo = {};
  private svg = '';
  private wanted = '';
  private modelId = '';
  private live: IRenderMime.IRenderer | null = null;
  private liveFailed = false;
  private waitingSession = false;
  private lateRetry = '';
  private lateTries = 0;
  private observer: MutationObserver | null = null;

  private get appWidgetFactory(): IRenderMime.IRendererFactory | undefined {
    return this.app?.getFactory(WIDGET_MIME);
  }
  private session: NotebookPanel['sessionContext'] | null = null;
  private kernel: Kernel.IKernelConnection | null = null;
  private readonly snap: HTMLDivElement;
  private readonly note: HTMLSpanElement;
  private readonly button: HTMLButtonElement;
  private readonly img: HTMLImageElement;
  private readonly liveHost: HTMLDivElement;
}

/** Registers the renderer in every notebook's rendermime (where the widget renderer lives too). */
export const snapshotPlugin: JupyterFrontEndPlugin<void> = {
  id: 'nbpipe:snapshot',
  description: 'Shows the saved snapshot of an nbpipe run graph when its live widget is gone, and re-connects it.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IRenderMimeRegistry],
  activate: (_app: JupyterFrontEnd, tracker: INotebookTracker, appRendermime: IRenderMimeRegistry | null): void => {
    const findPanel = (node: HTMLElement): NotebookPanel | null => tracker.find(p => p.node.contains(node)) ?? null;
    const register = (panel: NotebookPanel): void => {
      const rendermime = panel.content.rendermime;
      rendermime.removeMimeType(SNAPSHOT_MIME);
      rendermime.addFactory({ safe: true, mimeTypes: [SNAPSHOT_MIME], createRenderer: () => new SnapshotRenderer(findPanel, appRendermime) }, RANK);
    };
    tracker.forEach(register);
    tracker.widgetAdded.connect((_, panel) => register(panel));
  }
};
