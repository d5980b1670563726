"""The nbpipe Jupyter server extension: the only thing the JupyterLab panel talks to.

It serves ``/nbpipe/api/...`` (see :mod:`nbpipe.lab.routes` and :mod:`nbpipe.lab.notebook`)
and reaches the runner with :class:`nbpipe.Client`, so the browser never learns the runner's
address or token. It is enabled by ``jupyter-config/server-config/nbpipe.json``, which the
wheel installs into ``etc/jupyter/jupyter_server_config.d``.

Non-goals: running pipelines itself (the runner does) or exporting notebooks itself
(:mod:`nbpipe.export` does); this package only adapts HTTP requests to those.
"""

from __future__ import annotations

from typing import Any

from .connection import RunnerConnection
from .routes import handlers

__all__ = ["RunnerConnection", "handlers"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbpipe.lab"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the ``/nbpipe/api`` handlers on the server's web app."""
    from jupyter_server.utils import url_path_join

    web_app = serverapp.web_app
    web_app.settings["nbpipe.connection"] = RunnerConnection()
    base = url_path_join(web_app.settings["base_url"], "nbpipe", "api")
    web_app.add_handlers(".*$", [(url_path_join(base, pattern), handler) for pattern, handler in handlers()])
    serverapp.log.info("nbpipe server extension: serving %s", base)
