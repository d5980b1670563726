"""Stores and executors as entry-point plugins, with a real (throwaway) distribution.

The distribution ``nbpipe-testplugins`` 1.0 is a ``*.dist-info`` folder with ``entry_points.txt``
and its modules in a temporary folder; real runner processes (and the step processes they start)
find it through ``PYTHONPATH``, exactly as they would find an installed package. Nothing is
monkeypatched. Also: the contract tests run against the plugin's store (``NBPIPE_TEST_STORE``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from runner_process import RunnerProcess

from nbpipe import component, pipeline

PLUGIN = '''
"""A third-party store and executor, as a plugin author would write them."""
import json
import os

from nbpipe.executors.local import LocalExecutor
from nbpipe.stores.local import LocalStore


def _note(journal, **what):
    with open(journal, "a") as fh:
        fh.write(json.dumps(what) + "\\n")


class JournalStore(LocalStore):
    """A folder store that notes every write (and which process made it) in a journal file."""

    def __init__(self, root, journal):
        super().__init__(root)
        self.journal = journal
        os.makedirs(os.path.dirname(journal), exist_ok=True)

    def config(self):
        return {"type": "journal", "root": str(self.root), "journal": self.journal}

    def put_bytes(self, data, key=None):
        info = super().put_bytes(data, key)
        _note(self.journal, op="put", key=info.key, pid=os.getpid())
        return info

    def put_file(self, path, key=None, *, move=False):
        info = super().put_file(path, key, move=move)
        _note(self.journal, op="put", key=info.key, pid=os.getpid())
        return info


class JournalExecutor(LocalExecutor):
    """The local executor, noting each attempt it starts."""

    name = "journal"

    def __init__(self, journal, **options):
        super().__init__(**options)
        self.journal = journal

    async def start(self, job, attempt_id, log_path, workdir):
        _note(self.journal, op="start", attempt=attempt_id)
        return await super().start(job, attempt_id, log_path, workdir)
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the distribution ``nbpipe-testplugins`` 1.0: modules and a dist-info."""
    site = tmp_path_factory.mktemp("site")
    (site / "nbpipe_testplugins.py").write_text(PLUGIN)
    (site / "nbpipe_testplugins_broken.py").write_text('raise ImportError("libfrobnicate.so.2: cannot open shared object file")\n')
    info = site / "nbpipe_testplugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nbpipe-testplugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [nbpipe.stores]
        journal = nbpipe_testplugins:JournalStore

        [nbpipe.executors]
        journal = nbpipe_testplugins:JournalExecutor
        broken = nbpipe_testplugins_broken:Executor
        """))
    (info / "RECORD").write_text("")
    return site


def _env(site: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")])), **extra}


@component(cache=False)
def double_it(x: int) -> int:
    return 2 * x


@pipeline
def doubled(x: int = 21):
    double_it(x=double_it(x=x).output)


def test_a_runner_uses_a_store_and_an_executor_chosen_by_entry_point_name(plugin_path: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    root = tmp_path / "plugin-store"
    env = _env(plugin_path, NBPIPE_STORE="journal", NBPIPE_STORE_OPTIONS=json.dumps({"root": str(root), "journal": str(journal)}),
               NBPIPE_EXECUTOR="journal", NBPIPE_EXECUTOR_OPTIONS=json.dumps({"journal": str(journal)}))
    runner = RunnerProcess(tmp_path / "runner", extra_env=env).start()
    try:
        client = runner.client()
        health = client.health()
        runner_pid = runner.pid
        run = client.submit(doubled).wait(timeout=120)
        assert run.output("double_it-2") == 84
        assert run.output("double_it") == 42
    finally:
        runner.stop()
    notes = [json.loads(line) for line in journal.read_text().splitlines()]
    started = [n["attempt"] for n in notes if n["op"] == "start"]
    assert len(started) == 2 and all(a.startswith(run.id) for a in started)
    results = [n for n in notes if n["op"] == "put" and n["key"].endswith("result.json")]
    assert len(results) == 2 and runner_pid not in {n["pid"] for n in results}  # step processes opened it by name
    assert list(root.rglob("result.json"))  # the objects are in the plugin store's folder
    assert (health["executor"], health["store"]) == ("journal", "journal")


def _start_fails(site: Path, tmp_path: Path, *args: str, **env: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "nbpipe.runner", "--port", "0", "--data-dir", str(tmp_path / "r"), *args],
                          env={**os.environ, **_env(site, **env)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    return proc.stderr


def test_a_plugin_that_fails_to_load_is_named_with_its_distribution(plugin_path: Path, tmp_path: Path) -> None:
    err = _start_fails(plugin_path, tmp_path, NBPIPE_EXECUTOR="broken")
    assert "executor plugin 'broken'" in err and "nbpipe_testplugins_broken:Executor" in err
    assert "'nbpipe-testplugins' 1.0" in err and "libfrobnicate.so.2" in err
    assert "Traceback" not in err


def test_unknown_names_and_bad_options_fail_at_start_listing_what_is_known(plugin_path: Path, tmp_path: Path) -> None:
    err = _start_fails(plugin_path, tmp_path, NBPIPE_STORE="jornal")
    assert "Unknown store 'jornal'" in err and "Known stores: journal, local, s3" in err
    err = _start_fails(plugin_path, tmp_path, "--executor", "kubernets")
    assert "Unknown executor 'kubernets'" in err and "broken, journal, kubernetes, local" in err
    err = _start_fails(plugin_path, tmp_path, "--store", "journal", "--store-options", '{"root": "/tmp/x", "jurnal": "j"}')
    assert "The store 'journal' has no option 'jurnal'" in err and "Its options: root, journal" in err
    err = _start_fails(plugin_path, tmp_path, "--store", "journal", "--store-options", "{root: 1}")
    assert "--store-options / NBPIPE_STORE_OPTIONS is not JSON" in err


def test_the_store_contract_runs_against_the_plugin_store(plugin_path: Path, tmp_path: Path) -> None:
    """``NBPIPE_TEST_STORE`` (a store config as JSON) runs tests/test_store_contract.py against any store."""
    config = {"type": "journal", "root": "{tmp}/objects", "journal": "{tmp}/journal.jsonl"}
    here = Path(__file__).parent
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(here / "test_store_contract.py"),
                           "-k", "plugin"], cwd=here.parent, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **_env(plugin_path, NBPIPE_TEST_STORE=json.dumps(config))})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary
    assert int(summary.split(" passed")[0].split()[-1]) >= 10, summary
