"""The installed package enables both halves of the Lab extension with no manual step.

``pip install -e .`` (``make setup``) builds the labextension and installs it, with
``jupyter-config/server-config/nbpipe.json``, through the wheel's shared-data.
"""

from __future__ import annotations

import os
import subprocess
import sys


def jupyter_list(module: str) -> str:
    """Output of ``python -m <module> list`` with the environment's own Jupyter paths."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_")}
    proc = subprocess.run([sys.executable, "-m", module, "list"], capture_output=True, text=True, env=env,
                          timeout=120)
    return proc.stdout + proc.stderr


def test_labextension_is_installed_and_enabled() -> None:
    out = jupyter_list("jupyterlab.labextensions")
    line = next((x for x in out.splitlines() if x.strip().startswith("nbpipe ")), "")
    assert "enabled" in line and "OK" in line and "(python, nbpipe)" in line, out


def test_server_extension_is_enabled_and_validates() -> None:
    out = jupyter_list("jupyter_server.extension.serverextension")
    assert any("nbpipe.lab" in x and "enabled" in x for x in out.splitlines()), out
    assert "OK" in out.split("Validating nbpipe.lab", 1)[1][:200], out
