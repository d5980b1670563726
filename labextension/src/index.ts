/**
 * The nbpipe JupyterLab extension: `nbpipe:panel` (the left sidebar panel, following the active
 * notebook) and `nbpipe:commands` (command palette entries and the notebook toolbar button).
 *
 * Non-goals: anything the server extension (`nbpipe/lab`) or the shared run view do.
 */

import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Token } from '@lumino/coreutils';

import { addCommands } from './commands';
import { dashboardPlugin, DashboardCommands } from './dashboard';
import { endpointsPlugin } from './endpoints';
import { NotebookContent, PanelModel } from './model';
import { NbpipePanel } from './panel';
import { ServerApi } from './request';
import { snapshotPlugin } from './snapshot';

/** The nbpipe sidebar panel, for plugins that want to drive it. */
export const INbpipePanel = new Token<NbpipePanel>('nbpipe:INbpipePanel', 'The nbpipe sidebar panel.');

/** The notebook's JSON without outputs (analysis needs the code, not megabytes of plots). */
function notebookContent(nb: NotebookContent): NotebookContent {
  const cells = nb.cells.map(cell => {
    const { outputs: _outputs, attachments: _attachments, ...rest } = cell as Record<string, unknown>;
    return (rest.cell_type === 'code' ? { ...rest, outputs: [] } : rest) as Record<string, unknown>;
  });
  return { ...nb, cells };
}

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

function findNotebook(tracker: INotebookTracker, path: string): NotebookPanel | null {
  return tracker.find(panel => panel.context.path === path) ?? null;
}

const panelPlugin: JupyterFrontEndPlugin<NbpipePanel> = {
  id: 'nbpipe:panel',
  description: 'A sidebar to run the active notebook as an nbpipe pipeline and watch its runs.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILayoutRestorer],
  provides: INbpipePanel,
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, restorer: ILayoutRestorer | null): NbpipePanel => {
    const model = new PanelModel(new ServerApi(app.serviceManager.serverSettings), {
      // Only Run/Export save, and only a notebook with unsaved changes: opening a notebook or
      // switching tabs never writes a file (the analysis reads the editor's model instead).
      save: async path => {
        const nb = findNotebook(tracker, path);
        if (nb && nb.context.model.dirty) {
          // Lab marks a notebook dirty when its kernel fills in metadata (language_info): with the
          // cells as saved, the server exports the same code, so nothing is written.
          if (await sameCellsAsSaved(app, path, nb.context.model.toJSON() as unknown as NotebookContent)) {
            return false;
          }
          await nb.context.save();
          return true;
        }
        return false;
      },
      content: async path => {
        const nb = findNotebook(tracker, path);
        if (!nb) {
          return null;
        }
        await nb.context.ready; // before that the model is empty
        return notebookContent(nb.context.model.toJSON() as unknown as NotebookContent);
      }
    });
    const panel = new NbpipePanel(model, {
      revealCell: n => {
        const nb = tracker.currentWidget;
        if (!nb) {
          return;
        }
        app.shell.activateById(nb.id);
        const index = Math.max(0, Math.min(n - 1, nb.content.widgets.length - 1));
        nb.content.activeCellIndex = index;
        void nb.content.scrollToCell(nb.content.widgets[index]);
      },
      openFile: path => void app.commands.execute('docmanager:open', { path }),
      openRun: id => void app.commands.execute(DashboardCommands.openRun, { id }),
      openRuns: () => void app.commands.execute(DashboardCommands.runs)
    });
    app.shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, 'nbpipe-panel');

    const follow = (): void => {
      const nb = tracker.currentWidget;
      void model.setNotebook(nb ? nb.context.path : null);
    };
    tracker.currentChanged.connect(follow);
    tracker.widgetAdded.connect((_, nb) => {
      nb.context.pathChanged.connect(() => {
        if (tracker.currentWidget === nb) {
          follow();
        }
      });
    });
    void app.restored.then(follow);
    // A cell run in the open notebook (a new pipeline, a changed constant) shows in the open panel
    // without a click on ↻; a burst of cells (Run All) is analyzed once, after it settles.
    let settle: number | undefined;
    NotebookActions.executed.connect((_, { notebook }) => {
      if (tracker.currentWidget?.content !== notebook || !panel.isVisible) {
        return;
      }
      window.clearTimeout(settle);
      settle = window.setTimeout(() => void model.analyze(), 700);
    });
    return panel;
  }
};

const commandsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'nbpipe:commands',
  description: 'nbpipe commands (Run Pipeline, Export Pipeline) and the notebook toolbar button.',
  autoStart: true,
  requires: [INbpipePanel, INotebookTracker],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, panel: NbpipePanel, tracker: INotebookTracker, palette: ICommandPalette | null) =>
    addCommands(app, panel, tracker, palette)
};

export default [panelPlugin, commandsPlugin, dashboardPlugin, endpointsPlugin, snapshotPlugin];
