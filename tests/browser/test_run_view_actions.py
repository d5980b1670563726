"""The run view's buttons in real Chromium: every one sends an action the widget and the panel handle.

Header: Cancel (live run), Rerun and "Rerun from failed" (finished runs; the latter only when a
step failed). Details pane: "Rerun from here". The "previous runs" links a widget shows after a
re-run switched it, and the one-line notice of the last action. Also: a succeeded or cached
step's reason (reused from run …, re-executed: …) shows in its meta line, not as an error.
"""

from __future__ import annotations

from typing import Any

from test_run_view import mount, node


def finished(snap: dict[str, Any], state: str) -> dict[str, Any]:
    steps = [dict(s, state="succeeded" if s["state"] in ("running", "retrying", "pending") else s["state"])
             for s in snap["steps"]]
    return {**snap, "state": state, "steps": steps}


def header_buttons(page: Any) -> dict[str, bool]:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.rv-run-actions button')]
      .map((b) => [b.textContent, !b.hidden]))""")


def test_header_buttons_follow_the_run_state_and_send_their_actions(rv_page: Any, rv_fixture: Any) -> None:
    snap = rv_fixture("ml_run.json")
    mount(rv_page, snap)
    assert header_buttons(rv_page) == {"Cancel": True, "Rerun from failed": False, "Rerun": False}
    rv_page.evaluate("(s) => window.view.setSnapshot(s)", finished(snap, "failed"))
    assert header_buttons(rv_page) == {"Cancel": False, "Rerun from failed": True, "Rerun": True}
    rv_page.get_by_role("button", name="Rerun from failed").click()
    rv_page.get_by_role("button", name="Rerun", exact=True).click()
    without_failure = finished(snap, "succeeded")
    without_failure["steps"] = [dict(s, state="succeeded") if s["state"] == "failed" else s
                                for s in without_failure["steps"]]
    rv_page.evaluate("(s) => window.view.setSnapshot(s)", without_failure)
    assert header_buttons(rv_page) == {"Cancel": False, "Rerun from failed": False, "Rerun": True}
    assert rv_page.evaluate("() => window.calls.action") == [["rerun_failed", {}], ["rerun", {}]]


def test_rerun_from_here_sends_the_step(rv_page: Any, rv_fixture: Any) -> None:
    mount(rv_page, finished(rv_fixture("ml_run.json"), "failed"))
    node(rv_page, "train_forest").click()
    rv_page.get_by_role("button", name="Rerun from here").click()
    assert rv_page.evaluate("() => window.calls.action") == [["rerun_from", {"step": "train_forest"}]]


def test_previous_runs_and_notice(rv_page: Any, rv_fixture: Any) -> None:
    mount(rv_page, rv_fixture("ml_run.json"))
    assert rv_page.locator(".rv-previous").is_hidden() and rv_page.locator(".rv-notice").is_hidden()
    rv_page.evaluate("""() => {
      window.view.setPrevious([{ id: 'r-1', name: 'a', state: 'failed' }, { id: 'r-2', name: 'b', state: 'succeeded' }]);
      window.view.setNotice({ text: 'Re-running run r-2 from step \\'split\\' as r-3.', kind: 'info' });
    }""")
    links = rv_page.locator(".rv-previous .rv-link")
    assert links.all_text_contents() == ["r-2 · succeeded", "r-1 · failed"]  # newest first
    assert rv_page.locator(".rv-notice").text_content() == "Re-running run r-2 from step 'split' as r-3."
    links.nth(1).click()
    assert rv_page.evaluate("() => window.calls.action") == [["open", {"run": "r-1"}]]
    rv_page.evaluate("() => window.view.setNotice({ text: 'Run r-9 has no step \\'x\\'', kind: 'error' })")
    assert "rv-notice-error" in rv_page.locator(".rv-notice").get_attribute("class")
    rv_page.evaluate("() => { window.view.setNotice(null); window.view.setPrevious([]); }")
    assert rv_page.locator(".rv-notice").is_hidden() and rv_page.locator(".rv-previous").is_hidden()


def test_a_cancelling_notice_goes_once_the_run_ended_in_either_order(rv_page: Any, rv_fixture: Any) -> None:
    """The kernel's "Cancelling run …" note and the run's end come on different channels, in either
    order (a Lab browser test saw the note arrive after the cancelled state and stay)."""
    snap = rv_fixture("ml_run.json")
    note = "() => window.view.setNotice({ text: 'Cancelling run r-1…', kind: 'info' })"
    mount(rv_page, snap)
    rv_page.evaluate(note)
    assert rv_page.locator(".rv-notice").is_visible()
    rv_page.evaluate("(s) => window.view.setSnapshot(s)", finished(snap, "cancelled"))
    assert rv_page.locator(".rv-notice").is_hidden()  # the end came second
    mount(rv_page, finished(snap, "cancelled"))
    rv_page.evaluate(note)
    assert rv_page.locator(".rv-notice").is_hidden()  # the end came first
    rv_page.evaluate("() => window.view.setNotice({ text: 'Run r-9 has no step x', kind: 'error' })")
    assert rv_page.locator(".rv-notice").is_visible()  # other notes still show on a finished run


def test_reasons_of_reused_and_re_executed_steps_are_not_errors(rv_page: Any, rv_fixture: Any) -> None:
    snap = finished(rv_fixture("ml_run.json"), "succeeded")
    for s in snap["steps"]:
        if s["name"] == "scale":
            s.update(state="cached", reason="reused from run r-1 (upstream of 'train_svm', unchanged)")
        if s["name"] == "train_svm":
            s.update(state="succeeded", reason="re-executed: re-run from 'train_svm'", traceback="")
    mount(rv_page, snap)
    for name, reason in (("scale", "reused from run r-1"), ("train_svm", "re-executed: re-run from 'train_svm'")):
        node(rv_page, name).click()
        assert reason in rv_page.locator(".rv-details-meta").text_content()
        assert rv_page.locator('.rv-tab[data-tab="error"]').is_hidden()
        assert reason in node(rv_page, name).get_attribute("title")


def test_a_rerun_from_the_notebook_widget_names_cells_edited_but_not_run(rv_page: Any, rv_fixture: Any) -> None:
    """In a notebook, the widget's re-run buttons send the cells JupyterLab marks edited since they
    ran (jp-mod-dirty, 1-based): the kernel's pipeline lacks those edits, and its notice says so."""
    sent = rv_page.evaluate("""(snap) => {
      const nb = document.createElement('div'); nb.className = 'jp-Notebook';
      for (let i = 0; i < 4; i++) {
        const cell = document.createElement('div'); cell.className = 'jp-Cell' + (i === 2 ? ' jp-mod-dirty' : '');
        cell.dataset.windowedListIndex = String(i); nb.append(cell);
      }
      const el = document.createElement('div'); nb.children[3].append(el);
      document.querySelector('#app').replaceChildren(nb);
      const traits = { snapshot: snap, logs: {}, images: {}, selected: '', notice: {}, previous: [] };
      const sent = [];
      const model = { get: (k) => traits[k], set: (k, v) => { traits[k] = v; }, save_changes() {}, on() {}, off() {},
                      send: (m) => sent.push(m) };
      window.RV.default.render({ model, el });
      [...el.querySelectorAll('.rv-run-actions button')].find((b) => b.textContent === 'Rerun from failed').click();
      [...el.querySelectorAll('.rv-run-actions button')].find((b) => b.textContent === 'Rerun').click();
      nb.children[2].classList.remove('jp-mod-dirty');
      [...el.querySelectorAll('.rv-run-actions button')].find((b) => b.textContent === 'Rerun').click();
      return sent;
    }""", finished(rv_fixture("ml_run.json"), "failed"))
    shown = {"shown": rv_fixture("ml_run.json")["id"]}  # the run clicked on (a double-click's 2nd click is dropped)
    assert [m["payload"] for m in sent] == [{**shown, "edited_cells": [3]}, {**shown, "edited_cells": [3]}, shown]
    assert [m["action"] for m in sent] == ["rerun_failed", "rerun", "rerun"]
