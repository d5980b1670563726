/**
 * Download a step's output from a run page or the panel, as Kubeflow's UI downloads an artifact:
 * the bytes the runner stored, under a name that says which step and output they are.
 *
 * Non-goals: previews (the run view renders them), folders as archives (the runner decides the bytes).
 */

import type { RunView } from '../../nbpipe/widgets/run_view.js';

const EXTENSIONS: Record<string, string> = { json: '.json', npy: '.npy', parquet: '.parquet', pickle: '.pkl', png: '.png', csv: '.csv', txt: '.txt' };

/** `train-model.npy`: the step, the output and the stored format's extension. */
export function downloadName(step: string, output: string, format?: string): string {
  const safe = (s: string): string => s.replace(/[^\w.-]+/g, '_');
  return `${safe(step)}-${safe(output)}${EXTENSIONS[format ?? ''] ?? ''}`;
}

/** Fetch the output's bytes (`fetch`: the Lab server's artifact route) and save them as a file. */
export async function downloadOutput(
  fetch: (digest: string, mime: string) => Promise<Blob>,
  step: string,
  output: string,
  out: { digest?: string; format?: string },
  view?: RunView
): Promise<void> {
  if (!out.digest) {
    return;
  }
  try {
    const url = URL.createObjectURL(await fetch(out.digest, 'application/octet-stream'));
    const a = document.createElement('a');
    a.href = url;
    a.download = downloadName(step, output, out.format);
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000); // the browser has read it by then
  } catch (err) {
    const text = err instanceof Error ? err.message.replace(/^\[nbpipe\] /, '') : String(err);
    view?.setNotice?.({ text: `Could not download ${step}.${output}: ${text}`, kind: 'error' });
  }
}
