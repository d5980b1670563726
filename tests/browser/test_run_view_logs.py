"""Browser tests of the log of a step that was already running when the view opened.

The runner writes a step attempt's log file and streams the same text as ``StepLog`` events. A view
that opened mid-run has missed the start, so selecting a running step fetches the text so far once
(``loadLogs``) and then appends events; events that arrive while the fetch is in flight may already be
in the fetched text and must not show twice.
"""

from __future__ import annotations

from typing import Any

MOUNT = """(snap) => {
  window.fetches = [];
  const host = document.createElement('div');
  document.querySelector('#app').replaceChildren(host);
  // loadLogs answers only when the test says so, to let events arrive while it is in flight.
  window.view = window.RV.createRunView(host, {
    loadLogs: (step, attempt) => new Promise((resolve, reject) => window.fetches.push({ step, attempt, resolve, reject })),
  });
  window.view.setSnapshot(snap);
  window.nextId = 100;
  window.log = (step, text, stream = 'stdout') => window.view.applyEvent({ type: 'StepLog', id: window.nextId++, run_id: snap.id, ts: 0, step, attempt: 1, stream, text });
}"""

LOG_TEXT = "() => document.querySelector('.rv-log').textContent"


def fetches(page: Any) -> list[list[Any]]:
    return page.evaluate("() => window.fetches.map((f) => [f.step, f.attempt])")


def resolve(page: Any, index: int, text: str) -> None:
    page.evaluate("async ([i, text]) => { window.fetches[i].resolve(text); await new Promise((r) => setTimeout(r, 0)); }", [index, text])


def test_running_step_opened_late_fetches_once_and_merges_events_without_duplicates(rv_page: Any, rv_fixture: Any) -> None:
    rv_page.evaluate(MOUNT, rv_fixture("ml_run.json"))
    rv_page.evaluate("() => window.log('report', 'line 3\\n')")  # streamed before anyone looked: also in the file
    rv_page.evaluate("() => window.view.select('report')")
    assert fetches(rv_page) == [["report", 1]]
    assert rv_page.evaluate(LOG_TEXT) == "Loading earlier output…\nline 3\n"
    rv_page.evaluate("() => { window.log('report', 'line 4\\n'); window.log('report', 'warn 5\\n', 'stderr'); }")  # during the fetch
    resolve(rv_page, 0, "line 0\nline 1\nline 2\nline 3\nline 4\n")  # the file held line 4 already, not line 5
    assert rv_page.evaluate(LOG_TEXT) == "line 0\nline 1\nline 2\nline 3\nline 4\nwarn 5\n"
    assert rv_page.locator(".rv-log .rv-log-stderr").text_content() == "warn 5\n"
    rv_page.evaluate("() => window.log('report', 'line 6\\n')")
    assert rv_page.evaluate(LOG_TEXT).endswith("line 4\nwarn 5\nline 6\n")
    # Once per attempt: away and back, or another tab and back, shows the merged log without asking again.
    rv_page.evaluate("() => { window.view.select('split'); window.view.select('report'); }")
    rv_page.locator('.rv-tab[data-tab="inputs"]').click()
    rv_page.locator('.rv-tab[data-tab="logs"]').click()
    assert rv_page.evaluate(LOG_TEXT) == "line 0\nline 1\nline 2\nline 3\nline 4\nwarn 5\nline 6\n"
    assert fetches(rv_page) == [["report", 1], ["split", 1]]


def test_fetched_text_ending_mid_line_joins_the_event_that_completes_it(rv_page: Any, rv_fixture: Any) -> None:
    rv_page.evaluate(MOUNT, rv_fixture("ml_run.json"))
    rv_page.evaluate("() => window.view.select('report')")
    rv_page.evaluate("() => { window.log('report', 'epoch 1 loss 0.91\\n'); window.log('report', 'epoch 2 loss 0.55\\n'); }")
    resolve(rv_page, 0, "start\nepoch 1 loss 0.91\nepoch 2 lo")  # read while the step was writing epoch 2
    assert rv_page.evaluate(LOG_TEXT) == "start\nepoch 1 loss 0.91\nepoch 2 loss 0.55\n"


def test_no_fetch_when_the_view_saw_the_attempt_start(rv_page: Any, rv_fixture: Any) -> None:
    snap = rv_fixture("ml_run.json")
    rv_page.evaluate(MOUNT, snap)
    rv_page.evaluate("""() => { window.view.applyEvent({ type: 'StepStarted', id: window.nextId++, run_id: 'x', ts: Date.now() / 1000,
      step: 'publish', attempt: 1, max_attempts: 2 }); window.view.applyEvent({ type: 'StepLog', id: window.nextId++, run_id: 'x', ts: 0,
      step: 'publish', attempt: 1, stream: 'stdout', text: 'pushing model\\n' }); window.view.select('publish'); }""")
    assert fetches(rv_page) == []
    assert rv_page.evaluate(LOG_TEXT) == "pushing model\n"


def test_failed_fetch_keeps_the_streamed_lines_and_says_why(rv_page: Any, rv_fixture: Any) -> None:
    rv_page.evaluate(MOUNT, rv_fixture("ml_run.json"))
    rv_page.evaluate("() => { window.view.select('report'); window.log('report', 'still here\\n'); }")
    rv_page.evaluate("async () => { window.fetches[0].reject(new Error('runner gone')); await new Promise((r) => setTimeout(r, 0)); }")
    text = rv_page.evaluate(LOG_TEXT)
    assert "still here\n" in text and "Could not load earlier output: runner gone" in text and "Loading" not in text
    rv_page.evaluate("() => { window.view.select('split'); window.view.select('report'); }")
    assert fetches(rv_page) == [["report", 1], ["split", 1]], "a failed fetch is not retried on every render"
