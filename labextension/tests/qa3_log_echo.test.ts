/**
 * The run view's log buffer (`LogBook` in `nbpipe/widgets/run_view_state.js`) when a step's log is
 * fetched mid-run: the runner tails the log file every 0.1 s, so the fetched text may hold lines
 * whose StepLog events arrive only after it. They showed twice (most often a step's first line,
 * when the step was opened as it started); now they show once, and new lines still show.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

interface Entry { chunks: { attempt: number; stream: string; text: string }[] }
interface Book {
  append(step: string, attempt: number, stream: string, text: string): Entry;
  beginFetch(step: string, attempt: number): Entry;
  merge(step: string, attempt: number, text: string | null, token: Entry): boolean;
  get(step: string): Entry | null;
}
interface StateModule { LogBook: new (now?: () => number) => Book }

async function loadState(): Promise<StateModule> {
  const source = readFileSync(join(__dirname, '..', '..', '..', 'nbpipe', 'widgets', 'run_view_state.js'), 'utf8');
  const dynamicImport = new Function('url', 'return import(url)') as (url: string) => Promise<StateModule>;
  return dynamicImport(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);
}

function shown(book: Book): string {
  return (book.get('s')?.chunks ?? []).map(c => c.text).join('');
}

/** A LogBook with a clock the test moves; `fetched` is the text the log request answered. */
async function fetchedMidRun(fetched: string, during: string[] = []): Promise<{ book: Book; clock: { t: number } }> {
  const { LogBook } = await loadState();
  const clock = { t: 1000 };
  const book = new LogBook(() => clock.t);
  const token = book.beginFetch('s', 1);
  for (const text of during) {
    book.append('s', 1, 'stdout', text);
  }
  assert.ok(book.merge('s', 1, fetched, token));
  return { book, clock };
}

test('a line in the fetched log whose event comes after the fetch shows once', async () => {
  const { book } = await fetchedMidRun('making 5 numbers\n');
  book.append('s', 1, 'stdout', 'making 5 numbers\n');
  assert.equal(shown(book), 'making 5 numbers\n');
  book.append('s', 1, 'stdout', 'making 5 numbers\n'); // printed again: a new line
  book.append('s', 1, 'stdout', 'done\n');
  assert.equal(shown(book), 'making 5 numbers\nmaking 5 numbers\ndone\n');
});

test('events during the fetch that the fetched log holds, and the ones after them, show once', async () => {
  const { book } = await fetchedMidRun('a\nb\nc\n', ['a\n']); // the tail had sent a; b and c come next
  assert.equal(shown(book), 'a\nb\nc\n');
  book.append('s', 1, 'stdout', 'b\nc\nd\n'); // b and c were fetched; d is new
  assert.equal(shown(book), 'a\nb\nc\nd\n');
});

test('an event past the fetched end keeps its new part; a partial last line is completed', async () => {
  const { book } = await fetchedMidRun('one\ntw', ['one\n']);
  book.append('s', 1, 'stdout', 'two\nthree\n');
  assert.equal(shown(book), 'one\ntwo\nthree\n');
});

test('a line like the fetched one, long after the fetch, is a new line', async () => {
  const { book, clock } = await fetchedMidRun('tick\n');
  clock.t += 60_000;
  book.append('s', 1, 'stdout', 'tick\n');
  assert.equal(shown(book), 'tick\ntick\n');
});

test('events that are not in the fetched log are all kept', async () => {
  const { book } = await fetchedMidRun('x\n', ['y\n']);
  book.append('s', 1, 'stdout', 'x\n');
  assert.equal(shown(book), 'x\ny\nx\n');
});
