/**
 * Commands and the notebook toolbar button: "nbpipe: Run Pipeline", "nbpipe: Export Pipeline",
 * "nbpipe: Export Pipeline as Kubeflow YAML" and "nbpipe: Open Panel", in the command palette
 * and (Run) on every notebook's toolbar. They act on the notebook the command names, or the
 * current one, through the panel's model.
 *
 * Non-goals: keyboard shortcuts (users choose their own in Lab's settings).
 */

import type { JupyterFrontEnd } from '@jupyterlab/application';
import { ICommandPalette, ToolbarButton } from '@jupyterlab/apputils';
import type { DocumentRegistry } from '@jupyterlab/docregistry';
import type { INotebookModel, INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';

import { nbpipeIcon } from './icons';
import type { NbpipePanel } from './panel';

export const CommandIDs = {
  open: 'nbpipe:open-panel',
  run: 'nbpipe:run-pipeline',
  export: 'nbpipe:export-pipeline',
  exportKfp: 'nbpipe:export-kfp'
} as const;

function notebookPath(tracker: INotebookTracker, args: ReadonlyPartialJSONObject): string | null {
  if (typeof args.path === 'string' && args.path) {
    return args.path;
  }
  return tracker.currentWidget?.context.path ?? null;
}

export function addCommands(
  app: JupyterFrontEnd,
  panel: NbpipePanel,
  tracker: INotebookTracker,
  palette: ICommandPalette | null
): void {
  const { commands, shell } = app;
  const model = panel.model;
  const hasNotebook = (): boolean => tracker.currentWidget !== null;

  /** Show the panel on `path` and make sure it has been analyzed. */
  const prepare = async (path: string): Promise<boolean> => {
    shell.activateById(panel.id);
    await model.setNotebook(path);
    if (!model.state.analysis && !model.state.analyzing) {
      await model.analyze();
    }
    return model.state.analysis !== null;
  };

  commands.addCommand(CommandIDs.open, {
    label: 'nbpipe: Open Panel',
    caption: 'Show the nbpipe pipeline panel',
    icon: nbpipeIcon,
    execute: () => shell.activateById(panel.id)
  });
  commands.addCommand(CommandIDs.run, {
    label: args => (args.toolbar ? 'Run Pipeline' : 'nbpipe: Run Pipeline'),
    caption: 'Export this notebook’s pipeline and run it with the panel’s parameters (saves it first only if it has unsaved changes)',
    icon: args => (args.toolbar ? nbpipeIcon : undefined),
    isEnabled: hasNotebook,
    execute: async args => {
      const path = notebookPath(tracker, args);
      if (path && (await prepare(path))) {
        return model.runPipeline();
      }
      return null;
    }
  });
  /** Export the notebook's pipeline next to it; KFP YAML is opened in Lab's editor. */
  const exportTo = (format: 'nbpipe' | 'kfp') => async (args: ReadonlyPartialJSONObject): Promise<string | null> => {
    const path = notebookPath(tracker, args);
    const out = path && (await prepare(path)) ? await model.exportNotebook(format) : null;
    if (out && format === 'kfp') {
      await commands.execute('docmanager:open', { path: out });
    }
    return out;
  };
  commands.addCommand(CommandIDs.export, {
    label: 'nbpipe: Export Pipeline',
    caption: 'Write this notebook’s pipeline package (.nbpipe) next to it',
    isEnabled: hasNotebook,
    execute: exportTo('nbpipe')
  });
  commands.addCommand(CommandIDs.exportKfp, {
    label: 'nbpipe: Export Pipeline as Kubeflow YAML',
    caption: 'Write Kubeflow Pipelines v2 YAML for this notebook’s pipeline next to it',
    isEnabled: hasNotebook,
    execute: exportTo('kfp')
  });
  tracker.currentChanged.connect(() => commands.notifyCommandChanged());

  if (palette) {
    for (const command of Object.values(CommandIDs)) {
      palette.addItem({ command, category: 'nbpipe' });
    }
  }

  app.docRegistry.addWidgetExtension('Notebook', new RunButtonExtension(app));
}

/** Adds a "Run Pipeline" button to every notebook's toolbar. */
class RunButtonExtension implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel> {
  constructor(private readonly app: JupyterFrontEnd) {}

  createNew(panel: NotebookPanel): IDisposable {
    const button = new ToolbarButton({
      icon: nbpipeIcon,
      label: 'Run Pipeline',
      className: 'nbp-toolbar-run',
      tooltip: 'nbpipe: export and run this notebook’s pipeline',
      onClick: () => void this.app.commands.execute(CommandIDs.run, { path: panel.context.path })
    });
    panel.toolbar.insertItem(10, 'nbpipe-run', button);
    return new DisposableDelegate(() => button.dispose());
  }
}
