/**
 * Saving an open notebook before the server reads it: the panel's Run/Export and every re-run
 * (panel, run list, run page) export the notebook *as saved*, so a cell fixed in the editor must
 * reach the file first. Only a notebook with edited cells is written; an untouched one never is.
 *
 * Non-goals: deciding when to save (the callers do: only when the user runs, exports or re-runs).
 */

import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

import type { NotebookContent } from './model';

/** Saves the notebook at `path` if its cells were edited; resolves true when it wrote the file. */
export type SaveNotebook = (path: string) => Promise<boolean>;

/** The cells' kinds and sources, as one comparable string. */
function cellsKey(nb: { cells?: unknown[] } | null | undefined): string {
  const text = (s: unknown): string => (Array.isArray(s) ? s.join('') : String(s ?? ''));
  return JSON.stringify((nb?.cells ?? []).map(c => {
    const cell = c as { cell_type?: string; source?: unknown };
    return [cell.cell_type, text(cell.source)];
  }));
}

/** Whether the saved file holds the same cells (kinds and sources) as the editor's model. */
async function sameCellsAsSaved(app: JupyterFrontEnd, path: string, model: NotebookContent): Promise<boolean> {
  try {
    const saved = await app.serviceManager.contents.get(path, { content: true, type: 'notebook' });
    return cellsKey(saved.content as { cells?: unknown[] }) === cellsKey(model);
  } catch {
    return false; // cannot tell: save, as before
  }
}

/**
 * The open notebook at `path`: a path under the Jupyter root (what the panel labels its runs with)
 * or an absolute one (a kernel's run names its notebook so), matched by its ending.
 */
export function findNotebook(tracker: INotebookTracker, path: string): NotebookPanel | null {
  return (
    tracker.find(panel => panel.context.path === path) ??
    (path.startsWith('/') ? tracker.find(panel => path.endsWith(`/${panel.context.path}`)) : undefined) ??
    null
  );
}

export function notebookSaver(app: JupyterFrontEnd, tracker: INotebookTracker): SaveNotebook {
  return async path => {
    const nb = findNotebook(tracker, path);
    if (!nb || !nb.context.model.dirty) {
      return false;
    }
    // Lab marks a notebook dirty when its kernel fills in metadata (language_info): with the
    // cells as saved, the server exports the same code, so nothing is written.
    if (await sameCellsAsSaved(app, nb.context.path, nb.context.model.toJSON() as unknown as NotebookContent)) {
      return false;
    }
    await nb.context.save();
    return true;
  };
}
