/**
 * Asking before an action that cannot be undone, as JupyterLab asks (its Dialog, not the browser's
 * `confirm()`, which blocks the page and looks like no other Lab question), and as Kubeflow's UI
 * asks before it terminates a run.
 *
 * Non-goals: what the action does (the caller does it when the answer is yes).
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';

/** Ask `question`; true if the user clicked `yes` (Escape, a click outside and `no` say no). */
export async function confirmAction(title: string, question: string, yes: string, no = 'Keep'): Promise<boolean> {
  const result = await showDialog({
    title,
    body: question,
    buttons: [Dialog.cancelButton({ label: no }), Dialog.warnButton({ label: yes })],
    defaultButton: 0 // Enter keeps: the safe answer
  });
  return result.button.accept;
}

/** Ask before cancelling run `id` (`name`, if it has one): its running steps are stopped. */
export function confirmCancel(id: string, name?: string): Promise<boolean> {
  const which = name && name !== id ? `${name} (${id})` : id;
  return confirmAction('Cancel run?', `Cancel run ${which}? Its running steps are stopped, and the run cannot be resumed.`,
    'Cancel run', 'Keep running');
}
