/**
 * A Server-Sent Events frame parser (the `text/event-stream` format), fed text as it arrives.
 *
 * The panel reads the server extension's event stream with `fetch` rather than `EventSource`,
 * so requests carry JupyterLab's auth headers and failures surface as `ResponseError`s.
 * Non-goals: reconnecting (the model does), decoding the `data` JSON (events.ts does).
 */

export interface SseFrame {
  /** The `id:` field, or null when the frame had none. */
  id: string | null;
  /** The `event:` field (`message` when absent). */
  event: string;
  /** `data:` lines joined with newlines. */
  data: string;
}

export class SseParser {
  private buffer = '';

  /** Add text; return the frames it completes (a frame ends with a blank line). */
  push(text: string): SseFrame[] {
    this.buffer += text;
    const frames: SseFrame[] = [];
    for (;;) {
      const match = /\r\n\r\n|\n\n|\r\r/.exec(this.buffer);
      if (!match) {
        break;
      }
      const block = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const frame = parseBlock(block);
      if (frame) {
        frames.push(frame);
      }
    }
    return frames;
  }
}

function parseBlock(block: string): SseFrame | null {
  let id: string | null = null;
  let event = 'message';
  const data: string[] = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (line === '' || line.startsWith(':')) {
      continue; // comments carry keep-alives
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) {
      value = value.slice(1);
    }
    if (field === 'data') {
      data.push(value);
    } else if (field === 'id') {
      id = value;
    } else if (field === 'event') {
      event = value;
    }
  }
  return data.length ? { id, event, data: data.join('\n') } : null;
}
