"""Fixtures for the Lab server extension tests: a real Jupyter server (auth on) and a real runner.

``jp_fetch`` sends the server's token; ``anonymous_fetch`` sends none, to check that every
route refuses it. ``NBPIPE_HOME`` is a temporary folder, so the embedded runner these tests
start is their own and is stopped afterwards.

For the end-to-end browser tests: ``start_lab`` runs a real ``jupyter lab`` process (own port,
PID recorded and stopped, isolated folders) and ``lab_browser`` is Debian's Chromium driven by
Playwright (never a downloaded browser).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
from runner_process import stop_embedded_runner

# jupyter_server's fixtures and hooks (jp_fetch, jp_serverapp…), for tests/lab only: a
# top-level pytest_plugins would put its event-loop handling under every test (and break
# Playwright's sync API in tests/browser); a subfolder may not declare pytest_plugins.
from pytest_jupyter.jupyter_server import *  # noqa: E402,F401,F403

NOTEBOOKS = Path(__file__).parent / "notebooks"
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAB_TOKEN = "nbpipe-e2e-token"


@pytest.fixture
def nbpipe_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    home = tmp_path_factory.mktemp("nbpipe-home")
    monkeypatch.setenv("NBPIPE_HOME", str(home))
    for name in ("NBPIPE_RUNNER_URL", "NBPIPE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield home
    stop_embedded_runner()  # the in-process Jupyter server started it


@pytest.fixture
def jp_server_config(nbpipe_home: Path) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"nbpipe.lab": True}, "allow_unauthenticated_access": False},
        "IdentityProvider": {"token": "nbpipe-test-token"},
    }


@pytest.fixture
def notebooks(jp_root_dir: Path) -> Path:
    """The fixture notebooks, copied into the server's root directory."""
    for nb in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(nb, jp_root_dir / nb.name)
    return jp_root_dir


@pytest.fixture
def api(jp_fetch: Any) -> Any:
    """``await api("runs")`` → (status, parsed JSON or text); errors come back, not raised."""

    async def call(path: str, method: str = "GET", body: Any = None, **params: Any) -> tuple[int, Any]:
        kw: dict[str, Any] = {"method": method, "params": params, "request_timeout": 120}
        if body is not None:
            kw["body"] = json.dumps(body)
        elif method in ("POST", "PUT"):
            kw["body"] = "{}"
        try:
            resp = await jp_fetch("nbpipe", "api", *path.split("/"), **kw)
        except tornado.httpclient.HTTPClientError as exc:
            resp = exc.response
            assert resp is not None, exc
        text = resp.body.decode()
        ctype = resp.headers.get("Content-Type", "")
        return resp.code, json.loads(text) if ctype.startswith("application/json") and text else text

    return call


# ---------------------------------------------------------------- real JupyterLab + Chromium


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build_sources() -> tuple[Path, list[Path]]:
    out = ROOT / "nbpipe" / "labextension" / "package.json"
    sources = [
        *(ROOT / "labextension" / "src").rglob("*.ts"),
        *(ROOT / "labextension" / "style").glob("*"),
        *(ROOT / "nbpipe" / "widgets").glob("run_view*"),
        ROOT / "package.json",
    ]
    return out, sources


def build_is_stale() -> bool:
    out, sources = _build_sources()
    return not out.exists() or max(p.stat().st_mtime for p in sources) > out.stat().st_mtime


def fresh_build(labextensions: Path) -> Path:
    """A labextensions folder holding the repo's build (rebuilt with ``jlpm build`` when stale).

    Lab is pointed at it (``extra_labextensions_path`` wins over the installed copy), so the test
    always exercises the code in the tree, including the shared ``run_view`` files. Lab serves
    ``/lab/extensions/nbpipe/`` from ``<folder>/nbpipe``, hence the symlink.
    """
    out, _ = _build_sources()
    if build_is_stale():
        # The venv's bin first, so jlpm (and the jlpm its scripts call) is found also when the venv
        # is not activated (``.venv/bin/python -m pytest``).
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        jlpm = shutil.which("jlpm", path=path)
        assert jlpm, "jlpm is missing: install the test environment with `make setup`"
        proc = subprocess.run(
            [jlpm, "build"],
            cwd=ROOT,
            env={**os.environ, "PATH": path},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    labextensions.mkdir()
    (labextensions / "nbpipe").symlink_to(out.parent, target_is_directory=True)
    return labextensions


def wait_for_server(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"jupyter lab exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={LAB_TOKEN}", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"jupyter lab did not answer within {timeout} s:\n{log.read_text()[-4000:]}")


LAB_DIRS = ("work", "nbpipe-home", "config", "runtime", "settings", "workspaces")


def _lab_env() -> dict[str, str]:
    """The environment a test's ``jupyter lab`` gets, before its own NBPIPE_/JUPYTER_ folders."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("NBPIPE_", "JUPYTER_")) and k != "PYTEST_CURRENT_TEST"}


def boot_lab(base: Path) -> dict[str, Any]:
    """Start a ``jupyter lab`` with its own folders under ``base`` (empty root); does not wait for it."""
    env = _lab_env()
    dirs = {name: base / name for name in LAB_DIRS}
    for d in dirs.values():
        d.mkdir()
    # No "official Jupyter news?" toast over the screenshot.
    news = dirs["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))
    port = free_port()
    log = base / "lab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={LAB_TOKEN}",
        f"--ServerApp.root_dir={dirs['work']}",
        f"--LabApp.user_settings_dir={dirs['settings']}",
        f"--LabApp.workspaces_dir={dirs['workspaces']}",
        f"--LabApp.extra_labextensions_path={fresh_build(base / 'labextensions')}",
        "--ServerApp.allow_unauthenticated_access=False",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # CI machines run as root
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "NBPIPE_HOME": str(dirs["nbpipe-home"]), "JUPYTER_CONFIG_DIR": str(dirs["config"]),
                 "JUPYTER_RUNTIME_DIR": str(dirs["runtime"])},
            cwd=dirs["work"],
            start_new_session=True,
        )
    return {"proc": proc, "env": env, "base": base, "dirs": dirs, "log": log, "url": f"http://127.0.0.1:{port}"}


def stop_lab(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own session: it and its kernels
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # not this process's child: its own parent (or init) reaps it


class LabSpares:
    """One ``jupyter lab`` booted ahead, while the test before runs, for the next test that starts one.

    A Lab start costs 4-10 s (imports, extensions), which each browser test spent waiting. The spare
    is exactly what ``start_lab`` would start now, a new process with new, empty folders, so each test
    still gets a Lab of its own; it is handed out only if the environment and the extension build are
    still what it was started with, else it is stopped and a new one started. Spares are booted only
    while tests that use ``start_lab`` remain, so a single test run starts no extra Lab.
    """

    def __init__(self, factory: pytest.TempPathFactory, session: pytest.Session) -> None:
        self.factory = factory
        self.session = session
        self.spare: dict[str, Any] | None = None
        self.stopping: list[threading.Thread] = []

    def take(self, item: pytest.Item) -> dict[str, Any]:
        lab, self.spare = self.spare, None
        if lab is not None and (lab["proc"].poll() is not None or lab["env"] != _lab_env() or build_is_stale()):
            stop_lab(lab["proc"])
            lab = None
        if lab is None:
            lab = boot_lab(self.factory.mktemp("lab"))
        if self._more_after(item):
            self.spare = boot_lab(self.factory.mktemp("lab"))
        return lab

    def _more_after(self, item: pytest.Item) -> bool:
        items = self.session.items
        after = items[items.index(item) + 1:] if item in items else []
        return any("start_lab" in getattr(i, "fixturenames", ()) for i in after)

    def retire(self, procs: list[subprocess.Popen[bytes]], homes: list[Path]) -> None:
        """Stop a test's Lab servers, then the embedded runners of ``homes``, while the next test runs.

        Lab first, as before: its status poll (or a kernel) would start the runner again. Nothing
        the next test uses is shared with them (own ports and folders); the session waits for them.
        """

        def stop() -> None:
            for proc in procs:
                stop_lab(proc)
            for home in homes:
                try:  # started by this process (a Client() in the test): reap it once stopped
                    pid = int(json.loads((home / "runner.json").read_text())["pid"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                threading.Thread(target=_reap, args=(pid,), daemon=True).start()
                code = "from nbpipe._embedded import stop_local_runner; stop_local_runner()"
                subprocess.run([sys.executable, "-c", code], env={**os.environ, "NBPIPE_HOME": str(home)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False)

        thread = threading.Thread(target=stop, name="nbpipe-lab-teardown", daemon=True)
        thread.start()
        self.stopping.append(thread)

    def close(self) -> None:
        if self.spare is not None:
            stop_lab(self.spare["proc"])
            self.spare = None
        for thread in self.stopping:
            thread.join()


@pytest.fixture(scope="session")
def _lab_spares(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[LabSpares]:
    spares = LabSpares(tmp_path_factory, request.session)
    yield spares
    spares.close()


@pytest.fixture
def start_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _lab_spares: LabSpares,
              request: pytest.FixtureRequest) -> Iterator[Callable[..., dict[str, Any]]]:
    """``start_lab(*notebooks)``: a real ``jupyter lab`` of this test's own serving copies of ``notebooks``.

    Returns ``{"url", "root", "pid", "log", "token"}``. The server runs in its own session and
    is stopped by its PID (it and its kernels) after the test, then its embedded runner (in the
    background: :meth:`LabSpares.retire`). Its folders
    (``work`` = root, ``nbpipe-home``, ``config``, ``runtime``, ``settings``, ``workspaces``, ``lab.log``)
    are also reachable under ``tmp_path``. The server was started ahead (see :class:`LabSpares`).
    """
    procs: list[subprocess.Popen[bytes]] = []
    homes: list[Path] = []

    def start(*notebooks: Path) -> dict[str, Any]:
        lab = _lab_spares.take(request.node)
        procs.append(lab["proc"])
        homes.append(lab["dirs"]["nbpipe-home"])
        dirs: dict[str, Path] = lab["dirs"]
        root = dirs["work"]
        for nb in notebooks:
            shutil.copy(nb, root / nb.name)
        for name, target in [*dirs.items(), ("lab.log", lab["log"])]:
            if not (tmp_path / name).exists():
                (tmp_path / name).symlink_to(target)
        monkeypatch.setenv("NBPIPE_HOME", str(dirs["nbpipe-home"]))  # the test's Client() uses this runner
        wait_for_server(lab["url"], lab["proc"], lab["log"])
        return {"url": lab["url"], "root": root, "pid": lab["proc"].pid, "log": lab["log"], "token": LAB_TOKEN}

    try:
        yield start
    finally:
        _lab_spares.retire(procs, homes)


@pytest.fixture
def lab_browser() -> Iterator[Any]:
    """Debian's Chromium (``/usr/bin/chromium``) under Playwright, closed after the test."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing. Install it with: apt-get install -y chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# The status bar's kernel item ("Python 3 (ipykernel) | Idle") of the current notebook.
KERNEL_STATUS = '#jp-main-statusbar [title^="Change kernel for"]'


def wait_for_kernel(page: Any, timeout: float = 90_000) -> None:
    """Until the current notebook's kernel is started, connected and idle, answering Lab's "Select
    Kernel" question (asked while its session is set up) with the default.

    The notebook toolbar's execution indicator says ``data-status="idle"`` from the start, before
    there is any kernel; a cell run then finds none and is dropped (the retries below waited their
    whole 60 s for it). The status bar's kernel item reads "| Idle" only once the kernel is connected.
    """
    import re

    from playwright.sync_api import expect

    if not getattr(page, "nbpipe_kernel_dialog_handled", False):
        page.add_locator_handler(page.locator(".jp-Dialog", has_text="Select Kernel"),
                                 lambda d: d.locator(".jp-mod-accept").click())
        page.nbpipe_kernel_dialog_handled = True
    expect(page.locator(KERNEL_STATUS)).to_have_text(re.compile(r"\| Idle$"), timeout=timeout)


def run_all(page: Any, notebook: Any, tries: int = 3) -> None:
    """Run > Run All Cells until the last cell has run, once the kernel is up. A Run All sent while
    Lab still sets up the session may be dropped all the same, so try again."""
    import re

    from playwright.sync_api import expect

    wait_for_kernel(page)
    last = notebook.locator(".jp-Cell").last.locator(".jp-InputPrompt")
    for attempt in range(tries):
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        try:
            expect(last).to_have_text(re.compile(r"\[[\d*]+\]"), timeout=60_000)
            return
        except AssertionError:
            if attempt == tries - 1:
                raise


@pytest.fixture()
def lab_run_all() -> Callable[..., None]:
    """:func:`run_all` for browser tests (a fixture, since tests cannot import this conftest by name)."""
    return run_all


@pytest.fixture()
def lab_wait_for_kernel() -> Callable[..., None]:
    """:func:`wait_for_kernel`: before a test runs a cell itself."""
    return wait_for_kernel


@pytest.fixture()
def lab_notebook(tmp_path: Path) -> Callable[[str, list[str]], Path]:
    """``lab_notebook("name.ipynb", cells)``: a notebook of code cells (Python 3 kernel) in ``tmp_path``."""
    import nbformat

    def write(name: str, cells: list[str]) -> Path:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nbformat.write(nb, tmp_path / name)
        return tmp_path / name

    return write


def open_panel(page: Any, lab: dict[str, Any], notebook: str, pipeline: str) -> Any:
    """Open ``notebook`` in ``lab``, then the nbpipe panel, once it shows ``pipeline``; returns the panel."""
    from playwright.sync_api import expect

    page.goto(f"{lab['url']}/lab/tree/{notebook}?token={lab['token']}")
    page.locator(".jp-NotebookPanel:visible").first.wait_for(timeout=90_000)
    page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
    panel = page.locator("#nbpipe-panel")
    expect(panel.locator(".nbp-pipeline-name")).to_have_text(pipeline, timeout=120_000)
    return panel


@pytest.fixture()
def lab_open_panel() -> Callable[..., Any]:
    """:func:`open_panel`: ``lab_open_panel(page, lab, "x.ipynb", "pipeline")`` → the panel's locator."""
    return open_panel


def run_from_panel(panel: Any, **params: str) -> str:
    """Fill the panel's form with ``params``, click Run Pipeline, wait until that run succeeded; its id."""
    import re

    from playwright.sync_api import expect

    view = panel.locator(".nbpipe-run-view")
    for name, value in params.items():
        panel.locator(f'.nbp-param[data-name="{name}"] input').fill(value)
    panel.locator(".nbp-run-button").click()
    for name, value in params.items():
        expect(view.locator(".rv-params")).to_contain_text(f"{name}= {value}", timeout=120_000)
    expect(view.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=240_000)
    return str(view.locator(".rv-subtitle").inner_text().split(" · ")[-1])


@pytest.fixture()
def lab_run_from_panel() -> Callable[..., str]:
    """:func:`run_from_panel`: ``lab_run_from_panel(panel, x="3")`` → the id of the run it started."""
    return run_from_panel
