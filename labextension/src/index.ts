/**
 * The nbpipe JupyterLab extension: `nbpipe:panel` (the left sidebar panel, following the active
 * notebook) and `nbpipe:commands` (command palette entries and the notebook toolbar button).
 *
 * Non-goals: anything the server extension (`nbpipe/lab`) or the shared run view do.
 */

import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { Token } from '@lumino/coreutils';

import { addCommands } from './commands';
import { dashboardPlugin, DashboardCommands } from './dashboard';
import { endpointsPlugin } from './endpoints';
import { NotebookContent, PanelModel } from './model';
import { NbpipePanel } from './panel';
import { ServerApi } from './request';
import { findNotebook, notebookSaver } from './savenb';
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

const panelPlugin: JupyterFrontEndPlugin<NbpipePanel> = {
  id: 'nbpipe:panel',
  description: 'A sidebar to run the active notebook as an nbpipe pipeline and watch its runs.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILayoutRestorer],
  provides: INbpipePanel,
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, restorer: ILayoutRestorer | null): NbpipePanel => {
    const saver = notebookSaver(app, tracker);
    const model = new PanelModel(new ServerApi(app.serviceManager.serverSettings), {
      // Only Run/Export save, and only a notebook with unsaved changes: opening a notebook or
      // switching tabs never writes a file (the analysis reads the editor's model instead).
      save: saver,
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
      // After an analysis/export error, an edit or a save of the notebook looks again (Run enables
      // once the fix exports), without a click on ↻ or running a cell.
      const changed = (): void => {
        if (tracker.currentWidget === nb && panel.isVisible) {
          void model.notebookChanged(nb.context.path);
        }
      };
      void nb.context.ready.then(() => nb.context.model.contentChanged.connect(changed));
      nb.context.saveState.connect((_, saved) => saved === 'completed' && changed());
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
