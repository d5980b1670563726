/**
 * "Clone run", as Kubeflow's UI has it: the Run Pipeline form filled with a finished run's
 * parameters, to edit one and run again (Re-run takes them as they were).
 *
 * Non-goals: running (the form's Run Pipeline does), pipelines the open notebook does not have.
 */

import type { NotebookAnalysis } from './api';
import type { RunSummary } from './events';
import { initialRaw, RawValue } from './params';

/** The form's raw values for `run`'s parameters and what to tell the user, or why it cannot be filled. */
export function clonedRaws(analysis: NotebookAnalysis | null, run: RunSummary): { raws: Record<string, RawValue>; note: string } | { error: string } {
  const label = run.name || run.id;
  if (!analysis || analysis.pipeline === null) {
    return { error: `Open the notebook of run ${label} to clone it: the form is for the open notebook's pipeline.` };
  }
  if (run.pipeline !== analysis.pipeline) {
    const pick = analysis.pipelines.includes(run.pipeline)
      ? `Pick '${run.pipeline}' above, then clone again.` : `This notebook has no pipeline '${run.pipeline}': open the notebook the run came from.`;
    return { error: `Run ${label} ran pipeline '${run.pipeline}'; the form is for '${analysis.pipeline}'. ${pick}` };
  }
  const raws: Record<string, RawValue> = {};
  for (const p of analysis.parameters) {
    if (Object.prototype.hasOwnProperty.call(run.params, p.name)) {
      raws[p.name] = initialRaw({ ...p, default: run.params[p.name] }); // as its default would show (1.0 for a float)
    }
  }
  const gone = Object.keys(run.params).filter(k => !analysis.parameters.some(p => p.name === k));
  const note = `Filled in the parameters of run ${label}: edit them, then Run Pipeline.` +
    (gone.length ? ` Not in the pipeline any more: ${gone.join(', ')}.` : '');
  return { raws, note };
}
