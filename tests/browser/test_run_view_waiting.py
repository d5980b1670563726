"""QA: a step waiting for an identical running step (StepWaiting), in the run view in real Chromium.

Found in JupyterLab: "Rerun from here" on a running step made a new run whose step waited for the
running one (same code and inputs). The graph said only "pending" and the details pane put the
runner's reason under an *Error* tab, as if the waiting step had failed. The reason is no error:
it is in the details' meta line (no Error tab) and the node says "waiting", its tooltip why.
"""

from __future__ import annotations

import time
from typing import Any

RUN = "r20261202-075502-cb664b"
REASON = ("waiting for step 'slow' of run r20261202-075459-4f0bfd, running the same code and inputs; "
          "its result will be reused")


def test_a_waiting_step_says_why_and_is_no_error(rv_page: Any) -> None:
    now = time.time()
    step = {"name": "slow", "component": "slow", "display_name": "", "upstream": [], "group": "",
            "state": "pending", "attempt": 0, "max_attempts": 1, "started_at": None, "finished_at": None,
            "duration": None, "reason": "", "traceback": "", "cached": False, "inputs": {"n": {"value": 30}},
            "outputs": {}}
    snap = {"id": RUN, "name": "slowp (re-run from slow)", "pipeline": "slowp", "experiment": "Default",
            "state": "running", "reason": "", "params": {}, "labels": {}, "created_at": now - 2,
            "started_at": now - 2, "finished_at": None, "duration": None, "last_event_id": 156, "steps": [step]}
    rv_page.evaluate("""(snap) => {
      const host = document.createElement('div');
      document.querySelector('#app').replaceChildren(host);
      window.view = window.RV.createRunView(host, { onAction: () => {}, loadLogs: async () => '' });
      window.view.setSnapshot(snap);
    }""", snap)
    node = rv_page.locator('.rv-node[data-step="slow"]')
    node.click()
    tabs = rv_page.locator(".rv-details .rv-tab:visible")
    assert rv_page.evaluate("""(ev) => window.view.applyEvent(ev)""", {
        "type": "StepWaiting", "run_id": RUN, "step": "slow", "reason": REASON, "ts": now, "id": 157,
        "waiting_for_run": "r20261202-075459-4f0bfd", "waiting_for_step": "slow"})
    rv_page.wait_for_function("() => document.querySelector('.rv-details').textContent.includes('waiting for step')")
    assert tabs.all_text_contents() == ["Logs", "Inputs", "Outputs"]  # no Error tab: nothing failed
    assert REASON in rv_page.locator(".rv-details").inner_text()
    assert node.locator(".rv-node-meta").text_content() == "waiting"
    assert REASON in (node.get_attribute("title") or "")
    assert "rv-state-pending" in (node.get_attribute("class") or "")
