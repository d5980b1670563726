"""Two users and an admin behind a JupyterHub-style proxy, in a real JupyterLab in Debian's Chromium.

One runner with a users file and a proxy token; three Lab servers, each as a hub's spawner would
start it for one user (``NBPIPE_RUNNER_URL``, ``NBPIPE_TOKEN`` = the proxy token,
``JUPYTERHUB_USER``), so the Lab extension forwards its user in ``X-Nbpipe-User``. Alice's run is in
her panel and Runs page and not in bob's (and the reverse); bob opening alice's run by id gets a
clear message, not her run; the admin sees both. Waits are on states in the page, never on time.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from nbpipe.client import Client
from nbpipe.runner.auth import hash_token
from tests.lab.conftest import LAB_TOKEN, free_port, fresh_build, wait_for_server
from tests.lab.test_dashboard_browser import palette
from tests.runner_process import RunnerProcess
from tests.test_profiles import shared

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PROXY = "hub-proxy-" + "p" * 40
ALICE = "alice-" + "a" * 40
BOB = "bob-" + "b" * 40


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunnerProcess]:
    """The shared runner: alice (team-a), bob (team-b), ops (admin), and the hub's proxy token."""
    users = tmp_path / "users.json"
    users.write_text(json.dumps({
        "users": [{"name": "alice", "profiles": ["team-a"], "token_sha256": hash_token(ALICE)},
                  {"name": "bob", "profiles": ["team-b"], "token_sha256": hash_token(BOB)},
                  {"name": "ops", "role": "admin"}],
        "proxy": {"token_sha256": hash_token(PROXY)}}))
    runner = RunnerProcess(tmp_path / "runner", extra_env={"NBPIPE_USERS_FILE": str(users)}).start()
    yield runner
    runner.stop()


@pytest.fixture
def hub_labs(tmp_path: Path) -> Iterator[Any]:
    """``start(runner_url, *users)``: one ``jupyter lab`` per hub user, as its spawner would set it up."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(runner_url: str, *users: str) -> dict[str, str]:
        extensions = fresh_build(tmp_path / "labextensions")
        started = []
        for user in users:
            base = tmp_path / f"lab-{user}"
            dirs = {n: base / n for n in ("work", "home", "config", "runtime", "settings", "workspaces")}
            for d in dirs.values():
                d.mkdir(parents=True)
            news = dirs["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
            news.parent.mkdir(parents=True)
            news.write_text(json.dumps({"fetchNews": "false"}))
            env = {k: v for k, v in os.environ.items() if not k.startswith(("NBPIPE_", "JUPYTER_"))}
            env.update(NBPIPE_HOME=str(dirs["home"]), JUPYTER_CONFIG_DIR=str(dirs["config"]),
                       JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), NBPIPE_RUNNER_URL=runner_url,
                       NBPIPE_TOKEN=PROXY, JUPYTERHUB_USER=user)
            port = free_port()
            cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                   f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={LAB_TOKEN}",
                   f"--ServerApp.root_dir={dirs['work']}", f"--LabApp.user_settings_dir={dirs['settings']}",
                   f"--LabApp.workspaces_dir={dirs['workspaces']}", f"--LabApp.extra_labextensions_path={extensions}",
                   "--ServerApp.allow_unauthenticated_access=False"]
            if os.geteuid() == 0:
                cmd.append("--allow-root")
            log = base / "lab.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=dirs["work"],
                                        start_new_session=True)
            procs.append(proc)
            started.append((user, f"http://127.0.0.1:{port}", proc, log))
        for _, url, proc, log in started:  # started together, waited for in turn
            wait_for_server(url, proc, log)
        return {user: url for user, url, _, _ in started}

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def open_lab(browser: Any, url: str, errors: list[str]) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/lab?token={LAB_TOKEN}")
    page.locator(".jp-Launcher").first.wait_for(timeout=90_000)
    return page


def panel_and_runs_page_show(page: Any, shown: list[str], hidden: list[str], shot: str) -> None:
    """The side panel and the Runs page list exactly ``shown`` (and none of ``hidden``)."""
    from playwright.sync_api import expect

    page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
    panel = page.locator("#nbpipe-panel")
    for run_id in shown:
        expect(panel.locator(f'.nbp-run[data-run="{run_id}"]')).to_have_attribute("data-state", "succeeded",
                                                                                 timeout=60_000)
    expect(panel.locator(".nbp-run")).to_have_count(len(shown))
    for run_id in hidden:
        expect(panel.locator(f'.nbp-run[data-run="{run_id}"]')).to_have_count(0)
    palette(page, "nbpipe: Runs", "nbpipe:open-runs")
    rows = page.locator("#nbpipe-runs tr.nbp-runs-row")
    expect(rows).to_have_count(len(shown), timeout=30_000)
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.run)")) == sorted(shown)
    page.screenshot(path=str(ARTIFACTS / shot))


def test_two_hub_users_and_an_admin_see_only_what_is_theirs(hub: RunnerProcess, hub_labs: Any,
                                                             lab_browser: Any) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    a = Client(hub.url, token=ALICE).submit(shared, {"n": 3}).wait(timeout=120)
    b = Client(hub.url, token=BOB).submit(shared, {"n": 4}).wait(timeout=120)
    labs = hub_labs(hub.url, "alice", "bob", "ops")
    errors: list[str] = []

    alice = open_lab(lab_browser, labs["alice"], errors)
    panel_and_runs_page_show(alice, [a.id], [b.id], "lab-multiuser-alice.png")
    alice.locator(f'#nbpipe-runs tr[data-run="{a.id}"] .nbp-run-link').click()
    own = alice.locator(f'.nbp-runpage[data-run="{a.id}"]')
    expect(own.locator(".rv-pill").first).to_have_class("rv-pill rv-state-succeeded", timeout=30_000)
    expect(own.locator(".nbp-runpage-banner")).to_be_hidden()

    bob = open_lab(lab_browser, labs["bob"], errors)
    panel_and_runs_page_show(bob, [b.id], [a.id], "lab-multiuser-bob.png")
    # bob knows alice's run id (a link in a chat): her run page does not open for him
    palette(bob, "nbpipe: Open Run", "nbpipe:open-run")
    bob.locator(".jp-Dialog input").fill(a.id)
    bob.keyboard.press("Enter")
    foreign = bob.locator(f'.nbp-runpage[data-run="{a.id}"]')
    banner = foreign.locator(".nbp-runpage-banner")
    expect(banner).to_be_visible(timeout=30_000)
    expect(banner).to_contain_text(f"No run {a.id}")
    expect(foreign.locator(".rv-node")).to_have_count(0)  # nothing of her run: no step, no graph
    expect(foreign.locator(".nbp-runpage-host")).to_be_hidden()  # nor an empty graph with Cancel/Rerun
    expect(foreign.get_by_role("button", name="Cancel")).to_have_count(0)
    bob.screenshot(path=str(ARTIFACTS / "lab-multiuser-bob-foreign-run.png"))

    ops = open_lab(lab_browser, labs["ops"], errors)
    panel_and_runs_page_show(ops, [a.id, b.id], [], "lab-multiuser-admin.png")
    ops.locator(f'#nbpipe-runs tr[data-run="{b.id}"] .nbp-run-link').click()
    expect(ops.locator(f'.nbp-runpage[data-run="{b.id}"] .rv-pill').first).to_have_class(
        "rv-pill rv-state-succeeded", timeout=30_000)
    assert not errors, errors
