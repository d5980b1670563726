/**
 * `nbpipe:dashboard`: run pages, the Runs page, Compare and Lineage in JupyterLab's main area,
 * with their commands (palette, the side panel, notebook widgets' context menu) and layout
 * restoration (each page is tracked and re-opened from its run id / ids / artifact on reload).
 *
 * Non-goals: the side panel itself (panel.ts), drawing (runpage.ts, runsview.ts, compare.ts, lineage.ts).
 */

import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, InputDialog, showErrorMessage, WidgetTracker } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import type { DockLayout, Widget } from '@lumino/widgets';

import { RunStorage } from './archivemodel';
import { ComparePage } from './compare';
import { nbpipeIcon } from './icons';
import { LineagePage } from './lineage';
import { ServerApi } from './request';
import { RunPage } from './runpage';
import { notebookSaver } from './savenb';
import { MAX_COMPARE, RunListModel } from './runsmodel';
import { RunsPage } from './runsview';

export const DashboardCommands = {
  openRun: 'nbpipe:open-run',
  runs: 'nbpipe:open-runs',
  compare: 'nbpipe:compare-runs',
  lineage: 'nbpipe:lineage',
  openWidgetRun: 'nbpipe:open-widget-run'
} as const;

const RUN_ID = /^[A-Za-z0-9_.-]{1,128}$/;

function str(args: ReadonlyPartialJSONObject, key: string): string {
  const v = args[key];
  return typeof v === 'string' ? v : '';
}

function ids(args: ReadonlyPartialJSONObject): string[] {
  const v = args.runs;
  if (Array.isArray(v)) {
    return v.filter((x): x is string => typeof x === 'string');
  }
  return typeof v === 'string' ? v.split(/[\s,]+/).filter(Boolean) : [];
}

export const dashboardPlugin: JupyterFrontEndPlugin<void> = {
  id: 'nbpipe:dashboard',
  description: 'Run pages, the live Runs page, Compare and Lineage in the main area.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, INotebookTracker],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null, palette: ICommandPalette | null,
    tracker: INotebookTracker | null): void => {
    const api = new ServerApi(app.serviceManager.serverSettings);
    const storage = new RunStorage(api); // archive/restore/delete, seen by every Runs page and run page
    const { commands, shell } = app;
    const runs = new WidgetTracker<RunPage>({ namespace: 'nbpipe-run' });
    const lists = new WidgetTracker<RunsPage>({ namespace: 'nbpipe-runs' });
    const compares = new WidgetTracker<ComparePage>({ namespace: 'nbpipe-compare' });
    const lineages = new WidgetTracker<LineagePage>({ namespace: 'nbpipe-lineage' });

    const place = (widget: Widget, mode?: string, ref?: Widget | null): void => {
      if (!widget.isAttached) {
        shell.add(widget, 'main', { mode: (mode as DockLayout.InsertMode) || undefined, ref: ref?.id });
      }
      shell.activateById(widget.id);
    };
    const openRun = (id: string, mode?: string, ref?: Widget | null): RunPage => {
      const existing = runs.find(w => w.runId === id);
      if (existing) {
        // A page the tracker restored but the saved layout left out (it was saved while this
        // extension did not load) is detached: activating it alone did nothing, so add it again.
        place(existing, mode, ref);
        return existing;
      }
      const page = new RunPage(id, api, {
        openRun: other => void commands.execute(DashboardCommands.openRun, { id: other }),
        openLineage: (run, step, output) => void commands.execute(DashboardCommands.lineage, { run, step, output }),
        saveNotebook: tracker ? notebookSaver(app, tracker) : undefined,
        storage
      });
      void runs.add(page);
      place(page, mode, ref);
      return page;
    };

    commands.addCommand(DashboardCommands.openRun, {
      label: args => (str(args, 'id') ? `Open Run ${str(args, 'id')}` : 'nbpipe: Open Run…'),
      caption: 'Open a run’s page in the main area: graph, logs, artifacts, parameters, timing',
      icon: args => (args.toolbar ? nbpipeIcon : undefined),
      execute: async args => {
        let id = str(args, 'id');
        if (!id) {
          const answer = await InputDialog.getText({ title: 'Open nbpipe run', label: 'Run id', placeholder: 'e.g. r20261130-190203-ab12' });
          if (!answer.button.accept) {
            return null;
          }
          id = (answer.value ?? '').trim();
          if (!RUN_ID.test(id)) {
            void showErrorMessage('[nbpipe] Not a run id', `'${id}' is not a run id. Run ids look like r20261130-190203-ab12; nbpipe: Runs lists them.`);
            return null;
          }
        }
        if (!RUN_ID.test(id)) {
          return null;
        }
        const ref = str(args, 'mode') ? runs.currentWidget : null;
        return openRun(id, str(args, 'mode'), ref).id;
      }
    });

    commands.addCommand(DashboardCommands.runs, {
      label: 'nbpipe: Runs',
      caption: 'Every run, live: filter, search, compare',
      icon: nbpipeIcon,
      execute: () => {
        let page = lists.currentWidget;
        if (!page || page.isDisposed) {
          page = new RunsPage(new RunListModel(api), {
            openRun: id => void commands.execute(DashboardCommands.openRun, { id }),
            compare: selected => void commands.execute(DashboardCommands.compare, { runs: selected })
          }, storage);
          void lists.add(page);
        }
        place(page);
        return page.id;
      }
    });

    commands.addCommand(DashboardCommands.compare, {
      label: 'nbpipe: Compare Runs…',
      caption: `Parameters and metrics of 2 to ${MAX_COMPARE} runs side by side`,
      execute: async args => {
        let list = ids(args);
        if (!list.length) {
          const answer = await InputDialog.getText({ title: 'Compare nbpipe runs', label: `Run ids (2 to ${MAX_COMPARE}, separated by commas)` });
          list = answer.button.accept ? (answer.value ?? '').split(/[\s,]+/).filter(Boolean) : [];
        }
        list = [...new Set(list)].filter(id => RUN_ID.test(id)).slice(0, MAX_COMPARE);
        if (list.length < 1) {
          return null;
        }
        const key = list.join(',');
        const existing = compares.find(w => w.runIds.join(',') === key);
        const page = existing ?? new ComparePage(list, api, {
          openRun: id => void commands.execute(DashboardCommands.openRun, { id }),
          openSideBySide: all => {
            let ref: Widget | null = null;
            for (const id of all) {
              ref = openRun(id, ref ? 'split-right' : 'tab-after', ref ?? page);
            }
          }
        });
        if (!existing) {
          void compares.add(page);
        }
        place(page);
        return page.id;
      }
    });

    commands.addCommand(DashboardCommands.lineage, {
      label: args => (str(args, 'step') ? `Lineage of ${str(args, 'step')}.${str(args, 'output')}` : 'nbpipe: Artifact Lineage'),
      caption: 'Where an artifact came from and which steps, in which runs, used it',
      execute: args => {
        const link = { run: str(args, 'run'), step: str(args, 'step'), output: str(args, 'output') };
        if (!RUN_ID.test(link.run) || !link.step || !link.output) {
          return null;
        }
        const existing = lineages.find(w => w.current.run === link.run && w.current.step === link.step && w.current.output === link.output);
        if (existing) {
          place(existing); // also when restored but detached (see openRun)
          return existing.id;
        }
        const page: LineagePage = new LineagePage(link, api, {
          openRun: id => void commands.execute(DashboardCommands.openRun, { id }),
          navigated: () => {
            if (lineages.has(page)) {
              void lineages.save(page);
            }
          }
        });
        void lineages.add(page);
        const ref = runs.find(w => w.runId === link.run) ?? null;
        place(page, ref && str(args, 'mode') ? str(args, 'mode') : undefined, ref);
        return page.id;
      }
    });

    commands.addCommand(DashboardCommands.openWidgetRun, {
      label: 'Open Run in a Tab',
      caption: 'Open this run graph’s run in the main area',
      icon: nbpipeIcon,
      execute: () => {
        const node = app.contextMenuHitTest(el => el.classList.contains('nbpipe-run-view') && Boolean(el.dataset.run));
        const id = node?.dataset.run ?? '';
        return RUN_ID.test(id) ? openRun(id, 'split-right').id : null;
      }
    });
    app.contextMenu.addItem({ command: DashboardCommands.openWidgetRun, selector: '.nbpipe-run-view[data-run]', rank: 0 });

    if (palette) {
      for (const command of [DashboardCommands.runs, DashboardCommands.openRun, DashboardCommands.compare]) {
        palette.addItem({ command, category: 'nbpipe' });
      }
    }
    if (restorer) {
      void restorer.restore(runs, { command: DashboardCommands.openRun, args: w => ({ id: w.runId }), name: w => w.runId });
      void restorer.restore(lists, { command: DashboardCommands.runs, name: () => 'runs' });
      void restorer.restore(compares, { command: DashboardCommands.compare, args: w => ({ runs: w.runIds }), name: w => w.runIds.join(',') });
      void restorer.restore(lineages, {
        command: DashboardCommands.lineage,
        args: w => ({ ...w.current }),
        name: w => `${w.current.run}/${w.current.step}/${w.current.output}`
      });
    }
  }
};
