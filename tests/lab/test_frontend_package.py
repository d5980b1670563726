"""The npm side of the Lab extension agrees with the Python side, and its unit tests pass.

* ``package.json``'s version is ``nbpipe.__version__``;
* ``labextension/src/events.ts`` names the same event types and states as ``nbpipe/events.py``;
* the TypeScript unit tests (node's test runner on the DOM-free model, form and SSE logic) pass.
  They need ``node_modules``, which ``pip install -e .`` (``make setup``) installs with jlpm.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import nbpipe
from nbpipe import events

ROOT = Path(__file__).resolve().parents[2]
EVENTS_TS = (ROOT / "labextension" / "src" / "events.ts").read_text()


def ts_string_array(name: str) -> list[str]:
    match = re.search(rf"export const {name}\b[^=]*=\s*\[(.*?)\]", EVENTS_TS, re.S)
    assert match, f"{name} not found in events.ts"
    return re.findall(r"'([^']+)'", match.group(1))


def ts_set(name: str) -> set[str]:
    match = re.search(rf"export const {name}\b[^=]*=\s*new Set\(\[(.*?)\]\)", EVENTS_TS, re.S)
    assert match, f"{name} not found in events.ts"
    return set(re.findall(r"'([^']+)'", match.group(1)))


def test_npm_and_python_versions_agree() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    assert package["version"] == nbpipe.__version__
    assert package["jupyterlab"]["outputDir"] == "nbpipe/labextension"


def test_events_ts_mirrors_events_py() -> None:
    assert ts_string_array("EVENT_TYPES") == list(events.EVENT_TYPES)
    assert tuple(ts_string_array("RUN_STATES")) == events.RUN_STATES
    assert tuple(ts_string_array("STEP_STATES")) == events.STEP_STATES
    assert ts_set("RUN_FINAL") == events.RUN_FINAL
    assert ts_set("STEP_FINAL") == events.STEP_FINAL
    assert ts_set("STEP_OK") == events.STEP_OK
    # Every field of every Python event appears in its TypeScript interface.
    import dataclasses

    for name, cls in events.EVENT_TYPES.items():
        body = re.search(rf"export interface {name} extends EventBase \{{(.*?)\}}", EVENTS_TS, re.S)
        assert body, name
        declared = set(re.findall(r"^\s*(\w+):", body.group(1), re.M)) | {"run_id", "ts", "id"}
        assert {f.name for f in dataclasses.fields(cls)} | {"type"} == declared, name


def test_typescript_unit_tests_pass() -> None:
    jlpm = shutil.which("jlpm")
    assert jlpm, "jlpm is missing: install the test environment with `make setup`"
    assert (ROOT / "node_modules" / ".bin" / "tsc").exists(), (
        "node_modules is missing: run `jlpm install` (pip install -e . runs it)"
    )
    proc = subprocess.run([jlpm, "test"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    summary = "\n".join(
        line for line in proc.stdout.splitlines() if line.startswith(("# pass", "# fail", "not ok"))
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"^# pass (\d+)", proc.stdout, re.M) and "# fail 0" in proc.stdout, summary
