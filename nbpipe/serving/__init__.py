"""Model serving, the notebook-first way: a trained model becomes an HTTP inference endpoint.

``nbpipe.serve(model, predict=fn, name="iris")`` deploys from the kernel; :func:`deployer` makes
a deploy component for a pipeline (so ``If(accuracy > 0.95)`` can gate it). Either way the
predict function is captured by value like a component's function (with the notebook globals and
helpers it uses now), and the runner starts a model server speaking KServe's open inference
protocol v2. ``predict(model, x)`` gets the request's input as a numpy array (several inputs:
by name) and returns an array-like (or a dict of them). :class:`Endpoint` queries it.

Non-goals: traffic splitting and autoscaling (see :mod:`nbpipe.runner.endpoints`).
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import NbpipeError
from .bundle import make_bundle

# Deploying a version, rolling back and deleting one answer when the server serves the result: a
# Kubernetes rollout (a new pod, the model loaded) can take minutes, far past the client's 30 s default.
# Longer than the runner's own wait (NBPIPE_K8S_SERVING_READY_TIMEOUT, 300 s), so its answer (ready, or
# failed and why) arrives instead of a client timeout.
ROLLOUT_TIMEOUT = 330.0

__all__ = ["Endpoint", "EndpointError", "deployer", "endpoints", "serve"]


_HINTS = {
    400: "Check the request's inputs: a list of {name, shape, datatype, data} tensors.",
    404: "See the endpoint's versions with `nbpipe endpoints list` (or endpoint.refresh().versions).",
}


class EndpointError(NbpipeError):
    """An inference request the endpoint refused (4xx) or failed (5xx)."""

    def __init__(self, status: int, message: str, traceback: str = ""):
        super().__init__(message, traceback.strip(), _HINTS.get(status, "" if status >= 500 else _HINTS[400]))
        self.status = status
        self.traceback = traceback


def _client(runner: Any = None) -> Any:
    from ..client import Client, default_client

    if runner is None:
        return default_client()
    return runner if isinstance(runner, Client) else Client(runner)


class Endpoint:
    """A deployed endpoint: ``predict`` over HTTP, its versions, rollback and delete."""

    def __init__(self, info: dict[str, Any], client: Any):
        self.info, self._client = info, client
        self._http: Any = None

    def __repr__(self) -> str:
        return (f"<nbpipe Endpoint {self.name!r} version {self.version} at {self.url} "
                f"({self.info['state']}{': ' + self.info['reason'] if self.info.get('reason') else ''})>")

    @property
    def name(self) -> str:
        return str(self.info["name"])

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def version(self) -> str:
        return str(self.info["default_version"])

    @property
    def versions(self) -> list[str]:
        return [v["version"] for v in self.info["versions"]]

    def refresh(self) -> "Endpoint":
        self.info = self._client._request("GET", f"/api/v1/endpoints/{self.name}").json()
        return self

    def _h(self) -> Any:
        import httpx

        if self._http is None:
            self._http = httpx.Client(timeout=60)
        return self._http

    def _auth(self) -> dict[str, str]:
        # The endpoint's own token, from the runner's authenticated API — never the runner's token,
        # which the model server (running the user's predict code) must not see.
        token = self.info.get("token")
        if not token:
            raise NbpipeError(f"The runner gave no token for endpoint {self.name!r}",
                              hint="Upgrade the runner (nbpipe >= this version) and restart it: its model servers "
                                   "then get their own tokens.")
        return {"Authorization": f"Bearer {token}"}

    def infer(self, body: dict[str, Any], version: str | None = None) -> dict[str, Any]:
        """Send a raw v2 infer request; return the v2 response (raises :class:`EndpointError`)."""
        import httpx

        path = f"/v2/models/{self.name}" + (f"/versions/{version}" if version else "") + "/infer"
        try:
            resp = self._h().post(self.url + path, json=body, headers=self._auth())
            stale = resp.status_code == 401
        except httpx.TransportError:
            stale, resp = True, None
        if stale:
            # This object's address or token is old (the endpoint was deleted, redeployed or its runner
            # restarted): ask the runner where it is now ("No endpoint X" if it is gone) and try once more.
            before = (self.url, self.info.get("token"))
            self.refresh()
            if (self.url, self.info.get("token")) != before or resp is None:
                try:
                    resp = self._h().post(self.url + path, json=body, headers=self._auth())
                except httpx.TransportError as exc:
                    raise NbpipeError(f"Endpoint {self.name!r} does not answer at {self.url} "
                                      f"({self.info['state']}): {exc}", self.info.get("reason", ""),
                                      "See `nbpipe endpoints list`; deploy it again if it failed.") from None
        data = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code >= 400:
            raise EndpointError(resp.status_code, f"Endpoint {self.name!r} answered {resp.status_code}: "
                                f"{data.get('error') or resp.text}", data.get("traceback", ""))
        return data  # type: ignore[no-any-return]

    def predict(self, x: Any = None, version: str | None = None, **inputs: Any) -> Any:
        """Predictions for ``x`` (or named inputs): a numpy array (or a dict of them for several outputs)."""
        if x is not None:
            inputs = {"input-0": x, **inputs}
        if not inputs:
            raise EndpointError(400, "predict needs an input: endpoint.predict(X) or endpoint.predict(name=X)")
        from .protocol import decode_outputs, tensor  # numpy: not on the runner's start path (it imports .bundle)

        tensors = []
        for n, v in inputs.items():
            try:
                tensors.append(tensor(n, v))
            except (TypeError, ValueError) as exc:  # ragged lists, objects: nothing was sent
                raise NbpipeError(f"Input {n!r} cannot be sent to endpoint {self.name!r}: {exc}",
                                  hint="Pass a numpy array or nested lists of numbers or strings with a "
                                       "rectangular shape (every row the same length).") from None
        out = decode_outputs(self.infer({"inputs": tensors}, version)["outputs"])
        return out[next(iter(out))] if len(out) == 1 else out

    def rollback(self, version: str | None = None) -> "Endpoint":
        self.info = self._client._request("POST", f"/api/v1/endpoints/{self.name}/rollback",
                                          json={"version": version}, timeout=ROLLOUT_TIMEOUT).json()
        return self

    def delete_version(self, version: str) -> "Endpoint":
        self.info = self._client._request("DELETE", f"/api/v1/endpoints/{self.name}/versions/{version}",
                                          timeout=ROLLOUT_TIMEOUT).json()
        return self

    def delete(self) -> None:
        self._client._request("DELETE", f"/api/v1/endpoints/{self.name}")


def serve(model: Any = None, predict: Callable[..., Any] | None = None, *, name: str, version: str | None = None,
          load: Callable[..., Any] | None = None, description: str = "", runner: Any = None,
          resources: Any = None) -> Endpoint:
    """Deploy ``model`` (an object, or a saved file/folder path) with ``predict(model, x)`` as endpoint ``name``.

    A new version becomes the default; the previous ones stay for rollback. ``load(path)`` turns a
    model path into the object ``predict`` gets. ``resources`` (``{"cpu": "1", "memory": "2Gi",
    "gpu": 1}`` or :class:`nbpipe.Resources`): what this version's model server asks for on
    Kubernetes, instead of the runner's defaults (a rollback brings back the older version's); a
    local runner ignores it. Returns the :class:`Endpoint`.
    """
    if predict is None:
        raise NbpipeError("nbpipe.serve needs predict=", hint="e.g. nbpipe.serve(model, predict=lambda m, x: "
                          "m.predict(x), name='iris')")
    if model is None and callable(predict) and _required_positional(predict) >= 2:
        raise NbpipeError(f"Endpoint {name!r}: predict takes the model first, but no model was given",
                          hint="Pass the model: nbpipe.serve(model, predict=..., name=...) (from a shell: "
                               "nbpipe endpoints deploy NAME --model FILE --predict ...); a model-less "
                               "endpoint's predict takes only the inputs.")
    data = make_bundle(model, predict, load, name, resources)
    client = _client(runner)
    params = {"description": description}
    if version is not None:
        params["version"] = str(version)
    info = client._request("PUT", f"/api/v1/endpoints/{name}/versions", content=data, params=params,
                           headers={"Content-Type": "application/zip"}, timeout=ROLLOUT_TIMEOUT).json()
    ep = Endpoint(info, client)
    if info["state"] != "ready":
        raise NbpipeError(f"Endpoint {name!r} version {ep.version} is {info['state']}", info.get("reason", ""),
                          "Fix the predict/load function or the model and deploy again; the server log is "
                          f"in the runner's data folder under endpoints/{name}/server.log.")
    return ep


def _required_positional(fn: Any) -> int:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 0
    return sum(1 for p in params if p.default is p.empty
               and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def endpoints(runner: Any = None) -> list[Endpoint]:
    """Every endpoint on the runner."""
    client = _client(runner)
    return [Endpoint(i, client) for i in client._request("GET", "/api/v1/endpoints").json()]


def endpoint(name: str, runner: Any = None, wait: float = 0.0, version: str | None = None) -> Endpoint:
    """The endpoint ``name``. ``wait``: seconds to wait for it to be ready (at ``version``, if given) —
    a pipeline's deploy step is served a moment after its run ends."""
    import time

    client = _client(runner)
    deadline = time.monotonic() + wait
    while wait > 0:
        resp = client._http.get(f"/api/v1/endpoints/{name}")
        if resp.status_code == 200:
            info = resp.json()
            if info["state"] == "ready" and version in (None, info["default_version"]):
                return Endpoint(info, client)
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    ep = Endpoint(client._request("GET", f"/api/v1/endpoints/{name}").json(), client)
    if wait > 0 and (ep.info["state"] != "ready" or version not in (None, ep.version)):
        raise NbpipeError(f"Endpoint {name!r} is {ep.info['state']} at version {ep.version} after {wait:g} s",
                          ep.info.get("reason", ""), "See `nbpipe endpoints list` and the run that deploys it.")
    return ep


def deployer(name: str, predict: Callable[..., Any], load: Callable[..., Any] | None = None,
             component_name: str | None = None, artifact: bool | None = None, resources: Any = None) -> Any:
    """A deploy component: ``deploy(model)`` in a pipeline serves ``model`` as endpoint ``name``.

    The step bundles the model with ``predict`` (captured at submit time, like any component)
    into its ``endpoint`` Model output; when it succeeds the runner deploys it as a new version.
    ``model`` is an upstream value output, or — with ``load=`` (or ``artifact=True``) — a Model
    artifact (``Output[Model]`` of the training step), whose file ``load(path)`` reads in the server.
    ``resources``: what the model server asks for on Kubernetes (see :func:`serve`).
    """
    from ..artifacts import Input, Model, Output
    from ..component import Component, make_options
    from .bundle import DEPLOY_ENV, bundle_resources, check_endpoint_name

    check_endpoint_name(name)
    predict_fn, load_fn, wanted = predict, load, bundle_resources(resources)  # malformed: an error now

    def deploy(model: Any, endpoint: Output[Model]) -> None:
        from nbpipe.serving.bundle import make_bundle as _mb

        with open(endpoint.path, "wb") as fh:
            fh.write(_mb(model, predict_fn, load_fn, name, wanted))

    as_artifact = load is not None if artifact is None else artifact

    # Captured like the predict function's own component would be: its module (a notebook, a local
    # script) is pickled by value, so the step needs nothing of the kernel's files.
    deploy.__module__ = getattr(predict, "__module__", None) or deploy.__module__
    deploy.__annotations__ = {"model": Input[Model] if as_artifact else Any, "endpoint": Output[Model],
                              "return": None}  # real types, not strings
    deploy.__doc__ = f"Deploy the model as endpoint {name!r}."
    opts = make_options(env={DEPLOY_ENV: name}, cache=True)
    return Component(deploy, name=component_name or f"deploy-{name}", options=opts,
                     source=f"# deploy to endpoint {name!r}\n" + _source(predict))


def _source(fn: Any) -> str:
    try:
        from ..signature import source_of

        return source_of(fn)
    except (OSError, TypeError):
        return ""
