/**
 * Types for the shared run renderer, `nbpipe/widgets/run_view.js` (plain ES module, also used by
 * the notebook widget). Only what the panel calls is typed.
 */
declare module '*/widgets/run_view.js' {
  import type { RunEvent, RunSnapshot } from './events';

  export interface ImagePreview {
    digest: string;
    mime?: string;
    [key: string]: unknown;
  }

  export interface RunViewOptions {
    onSelect?: (step: string | null) => void;
    /** `run`: another run's log (the one a cached step's outputs came from). */
    loadLogs?: (step: string, attempt: number | null, run?: string) => Promise<string>;
    /** Show a "Lineage" link on each output in the details pane (the Lab run page). */
    onLineage?: (step: string, output: string) => void;
    loadImage?: (preview: ImagePreview) => Promise<string>;
    /** Show a "Download" link on each stored output in the details pane. */
    onDownload?: (step: string, output: string, out: { digest?: string; format?: string }) => void;
    onAction?: (action: 'cancel' | 'rerun' | 'rerun_from' | 'rerun_failed' | 'open' | string, payload: { step?: string; run?: string }) => void;
  }

  export interface RunView {
    setSnapshot(snapshot: RunSnapshot): void;
    applyEvent(event: RunEvent): boolean;
    setLogs(step: string, text: string): void;
    select(step: string | null): void;
    fit(): void;
    setNotice?(notice: { text: string; kind: 'info' | 'error' } | null): void;
    destroy(): void;
    readonly selected: string | null;
  }

  export function createRunView(el: HTMLElement, options?: RunViewOptions): RunView;
}
