/**
 * Archive, Restore and Delete in JupyterLab, as Kubeflow Pipelines' UI has them:
 *
 * - `RunsStorageBar`, for the Runs page: an "Active | Archived" switch (Kubeflow's Runs and
 *   Archived tabs) and, for the ticked runs, *Archive* (Active) or *Restore* and *Delete*
 *   (Archived; Delete asks first in a Lab dialog). Rows leave the list as soon as the runner
 *   agrees; a refusal (a run still running) shows the runner's message and its fix.
 * - `RunArchiveControl`, for a run page: *Archive* next to Rerun once the run has ended (hidden
 *   while it is queued or running), an "Archived" badge and *Restore* once archived.
 *
 * Every button ignores clicks while its call is in flight (a double click archives once, and never
 * archives then restores). Non-goals: the calls and what changed (archivemodel.ts), the list's rows.
 */

import { confirmAction } from './confirm';
import { button, h } from './dom';
import { RUN_FINAL, RunEvent, RunSnapshot } from './events';
import { deleteQuestion, leavesList, outcomeMessage, RunStorage, StorageAction, StorageOutcome, STORAGE_WORDS } from './archivemodel';
import type { RunListModel, RunListState } from './runsmodel';

type Notice = { text: string; kind: 'info' | 'error' };

/** The Runs page's switch, its action buttons and their message line. */
export class RunsStorageBar {
  readonly tabs: HTMLElement;
  readonly actions: HTMLElement;
  readonly message = h('div', { class: 'nbp-storage-message', 'aria-live': 'polite' });
  private readonly activeTab: HTMLButtonElement;
  private readonly archivedTab: HTMLButtonElement;
  private readonly buttons: Record<StorageAction, HTMLButtonElement>;
  private busy = false;
  private readonly disconnect: () => void;

  constructor(private readonly model: RunListModel, private readonly storage: RunStorage) {
    const tab = (label: string, archived: boolean, title: string): HTMLButtonElement => {
      const el = h('button', { type: 'button', role: 'tab', class: 'nbp-storage-tab', text: label, title, 'data-archived': String(archived) });
      el.addEventListener('click', () => {
        this.message.replaceChildren();
        void this.model.setArchived(archived);
      });
      return el;
    };
    this.activeTab = tab('Active', false, 'Runs that are not archived');
    this.archivedTab = tab('Archived', true, 'Archived runs: restore or delete them');
    this.tabs = h('div', { class: 'nbp-storage-tabs', role: 'tablist', 'aria-label': 'Active or archived runs' }, this.activeTab, this.archivedTab);
    const act = (action: StorageAction, title: string, danger = false): HTMLButtonElement =>
      button(STORAGE_WORDS[action].label, () => void this.act(action), {
        class: `nbp-storage-button${danger ? ' nbp-danger' : ''}`, title, 'data-action': action
      });
    this.buttons = {
      archive: act('archive', 'Archive the ticked runs: they leave this list and stay whole (Archived lists them)'),
      unarchive: act('unarchive', 'Restore the ticked runs to the Active list'),
      delete: act('delete', 'Delete the ticked runs for good (their artifacts and the step cache stay)', true)
    };
    this.actions = h('span', { class: 'nbp-storage-actions' }, this.buttons.archive, this.buttons.unarchive, this.buttons.delete);
    // Runs archived, restored or deleted anywhere in this Lab (another Runs page, a run page).
    this.disconnect = storage.changed.connect(outcome => this.changed(outcome));
  }

  render(state: RunListState): void {
    this.activeTab.setAttribute('aria-selected', String(!state.archived));
    this.archivedTab.setAttribute('aria-selected', String(state.archived));
    this.buttons.archive.hidden = state.archived;
    this.buttons.unarchive.hidden = !state.archived;
    this.buttons.delete.hidden = !state.archived;
    const n = state.selected.length;
    for (const [action, el] of Object.entries(this.buttons) as Array<[StorageAction, HTMLButtonElement]>) {
      el.disabled = this.busy || n === 0;
      el.textContent = n ? `${STORAGE_WORDS[action].label} ${n}` : STORAGE_WORDS[action].label;
    }
  }

  private async act(action: StorageAction): Promise<void> {
    const ids = [...this.model.state.selected];
    if (this.busy || !ids.length) {
      return; // a second click while the first is asked or sent
    }
    this.busy = true;
    this.render(this.model.state);
    try {
      if (action === 'delete') {
        const runs = ids.map(id => ({ id, name: this.model.state.runs.find(r => r.id === id)?.name }));
        if (!(await confirmAction(ids.length === 1 ? 'Delete run?' : `Delete ${ids.length} runs?`, deleteQuestion(runs), 'Delete', 'Keep'))) {
          return;
        }
      }
      this.show(outcomeMessage(await this.storage.apply(action, ids)));
    } finally {
      this.busy = false;
      this.render(this.model.state);
    }
  }

  private changed(outcome: StorageOutcome): void {
    if (!outcome.done.length) {
      return;
    }
    if (leavesList(outcome.action, this.model.state.archived)) {
      void this.model.dropRuns(outcome.done.map(r => r.id));
    } else {
      void this.model.load(true); // runs joined this list
    }
  }

  private show(msg: { kind: 'info' | 'error'; message: string; hint: string }): void {
    this.message.replaceChildren(
      msg.kind === 'error'
        ? h('div', { class: 'nbp-error', role: 'alert' },
          h('div', { class: 'nbp-error-body' }, h('div', { class: 'nbp-error-message', text: msg.message }),
            msg.hint ? h('div', { class: 'nbp-error-hint', text: msg.hint }) : null))
        : h('div', { class: 'nbp-notice', role: 'status' }, h('span', { text: msg.message }))
    );
  }

  dispose(): void {
    this.disconnect();
  }
}

/** A run page's Archive / Restore button and "Archived" badge, in the run graph's header. */
export class RunArchiveControl {
  readonly button: HTMLButtonElement;
  readonly badge = h('span', { class: 'nbp-archived-badge', text: 'Archived', hidden: true, title: 'This run is archived: the Runs list shows it under Archived' });
  private state: string | null = null;
  private archivedAt: number | null = null;
  private deleted = false;
  private readonly disconnect: () => void;

  constructor(private readonly storage: RunStorage, readonly runId: string, viewRoot: HTMLElement,
    private readonly notify: (notice: Notice) => void) {
    this.button = h('button', { type: 'button', class: 'rv-button nbp-archive-button', hidden: true, onclick: (e: MouseEvent) => void this.act(e) });
    const actions = viewRoot.querySelector('.rv-run-actions');
    actions?.append(this.button);
    actions?.before(this.badge);
    this.disconnect = storage.changed.connect(outcome => {
      const mine = outcome.done.find(r => r.id === runId);
      if (!mine) {
        return;
      }
      if (outcome.action === 'delete') {
        this.deleted = true;
        this.notify({ text: `Run ${runId} was deleted: this page shows what it was, and it cannot be opened again.`, kind: 'error' });
      } else {
        this.archivedAt = mine.archived_at ?? null;
      }
      this.render();
    });
  }

  setSnapshot(snap: Pick<RunSnapshot, 'state'> & { archived_at?: number | null }): void {
    this.state = snap.state;
    this.archivedAt = snap.archived_at ?? null;
    this.render();
  }

  applyEvent(event: RunEvent): void {
    if (event.run_id !== this.runId) {
      return;
    }
    if (event.type === 'RunStarted') {
      this.state = 'running';
    } else if (event.type === 'RunFinished') {
      this.state = event.state;
    } else {
      return;
    }
    this.render();
  }

  private render(): void {
    const ended = this.state !== null && RUN_FINAL.has(this.state);
    const archived = this.archivedAt !== null;
    this.badge.hidden = !archived || this.deleted;
    this.button.hidden = !ended || this.deleted; // a queued or running run cannot be archived
    this.button.textContent = archived ? 'Restore' : 'Archive';
    this.button.dataset.action = archived ? 'unarchive' : 'archive';
    this.button.title = archived ? 'Bring this run back to the Runs list' : 'Take this run off the Runs list; it stays whole, and Restore brings it back';
    this.button.disabled = this.storage.busy(this.runId);
  }

  private async act(event: MouseEvent): Promise<void> {
    // The second click of a double click: the first one's call is still out, or came back so fast
    // that the button already says Restore (a local runner answers in milliseconds).
    // (event.detail counts the clicks of one double click; a later, separate click is 1 again.)
    if (this.storage.busy(this.runId) || this.button.hidden || event.detail > 1) {
      return;
    }
    const action: StorageAction = this.archivedAt !== null ? 'unarchive' : 'archive';
    this.button.disabled = true;
    const outcome = await this.storage.apply(action, [this.runId]);
    this.render();
    const msg = outcomeMessage(outcome);
    this.notify({ text: msg.hint ? `${msg.message} ${msg.hint}` : msg.message, kind: msg.kind });
  }

  dispose(): void {
    this.disconnect();
  }
}
