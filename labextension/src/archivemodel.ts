/**
 * Archive, restore and delete runs, without the DOM, as Kubeflow Pipelines' UI does (its Runs and
 * Archived tabs): `RunStorage` sends one call per run to the server extension (the runner has no
 * bulk call), keeps a run from being sent twice while its call is in flight (a double click), and
 * tells every view what changed, so the Runs pages and run pages update at once, without a reload.
 *
 * Non-goals: DOM and dialogs (archive.ts), which runs a list shows (runsmodel.ts).
 */

import { ErrorInfo, errorInfo } from './format';
import { Emitter } from './runsmodel';

export type StorageAction = 'archive' | 'unarchive' | 'delete';

/** The runner's answer: `{id, archived, archived_at, state}` or `{id, deleted, state}`. */
export interface RunStorageAnswer {
  id: string;
  state: string;
  archived?: boolean;
  archived_at?: number | null;
  deleted?: boolean;
}

/** What `RunStorage` asks of the server extension (`request.ts`'s `ServerApi` implements it). */
export interface RunStorageApi {
  archiveRun(id: string): Promise<RunStorageAnswer>;
  unarchiveRun(id: string): Promise<RunStorageAnswer>;
  deleteRun(id: string): Promise<RunStorageAnswer>;
}

export interface StorageOutcome {
  action: StorageAction;
  done: RunStorageAnswer[];
  failed: Array<{ id: string; error: ErrorInfo }>;
}

export const STORAGE_WORDS: Record<StorageAction, { label: string; past: string }> = {
  archive: { label: 'Archive', past: 'archived' },
  unarchive: { label: 'Restore', past: 'restored' },
  delete: { label: 'Delete', past: 'deleted' }
};

const plural = (n: number): string => `${n} run${n === 1 ? '' : 's'}`;

export class RunStorage {
  readonly changed = new Emitter<StorageOutcome>();
  private readonly pending = new Set<string>();

  constructor(private readonly api: RunStorageApi) {}

  /** True while a call about `id` (any run, without `id`) is in flight. */
  busy(id?: string): boolean {
    return id === undefined ? this.pending.size > 0 : this.pending.has(id);
  }

  /**
   * Archive, restore or delete `ids`, one call each; a run whose call is still in flight is
   * skipped (a second click sends nothing). A refusal (a run still running: 409) is reported in
   * `failed` with the runner's message and hint; the others go on.
   */
  async apply(action: StorageAction, ids: string[]): Promise<StorageOutcome> {
    const todo = [...new Set(ids)].filter(id => !this.pending.has(id));
    todo.forEach(id => this.pending.add(id));
    const outcome: StorageOutcome = { action, done: [], failed: [] };
    try {
      for (const id of todo) {
        try {
          outcome.done.push(await this.call(action, id));
        } catch (err) {
          outcome.failed.push({ id, error: errorInfo(err) });
        }
      }
    } finally {
      todo.forEach(id => this.pending.delete(id));
    }
    if (todo.length) {
      this.changed.emit(outcome);
    }
    return outcome;
  }

  private call(action: StorageAction, id: string): Promise<RunStorageAnswer> {
    return action === 'archive' ? this.api.archiveRun(id) : action === 'unarchive' ? this.api.unarchiveRun(id) : this.api.deleteRun(id);
  }
}

/** Whether runs that went through `action` leave a list of archived (or of active) runs. */
export function leavesList(action: StorageAction, archivedList: boolean): boolean {
  return action === 'delete' || (action === 'archive') !== archivedList;
}

/** One line on what happened: a summary when all went through, else the first refusal and its fix. */
export function outcomeMessage(outcome: StorageOutcome): { kind: 'info' | 'error'; message: string; hint: string } {
  const { past } = STORAGE_WORDS[outcome.action];
  const done = outcome.done.length;
  if (!outcome.failed.length) {
    const one = done === 1;
    const them = one ? 'it' : 'them';
    const where = outcome.action === 'archive' ? ` Archived lists ${them}; Restore brings ${them} back.`
      : outcome.action === 'unarchive' ? ` ${one ? 'It is' : 'They are'} back in Active.` : '';
    return { kind: 'info', message: `${one ? 'Run' : plural(done)} ${past}.${where}`, hint: '' };
  }
  const first = outcome.failed[0].error;
  const prefix = outcome.failed.length > 1 || done ? `${plural(outcome.failed.length)} not ${past}${done ? ` (${done} ${past})` : ''}: ` : '';
  return { kind: 'error', message: `${prefix}${first.message}`, hint: first.hint };
}

/** The question asked before deleting `runs` (never undone; what stays). */
export function deleteQuestion(runs: Array<{ id: string; name?: string }>): string {
  const named = runs.slice(0, 5).map(r => (r.name && r.name !== r.id ? `${r.name} (${r.id})` : r.id)).join(', ');
  const more = runs.length > 5 ? ` and ${runs.length - 5} more` : '';
  const which = runs.length === 1 ? `run ${named}` : `${plural(runs.length)}: ${named}${more}`;
  return `Delete ${which}? This cannot be undone: the run records, step logs and run pages are removed for good. ` +
    'Their artifacts and the step cache stay (later runs keep reusing cached results).';
}
