"""``RunView``: the live run graph in a notebook, an anywidget over ``run_view.js``.

The widget's model holds the run snapshot (the runner's JSON), the logs of the selected step
and image previews as data URLs. A daemon thread follows the run's event stream (SSE, pushed
by the runner, never polled) and folds each event into the snapshot here in Python with
:func:`apply_event`; another thread sends the changed state to the front end at most ten
times a second. The kernel stays free: ``show(run)`` returns at once and the user keeps
running cells while the graph updates.

Non-goals: drawing (``run_view.js`` does, for the Lab panel too), talking HTTP (``Run`` and
``Client`` do), and keeping runs alive (the runner owns them; the widget only watches).
"""

from __future__ import annotations

import base64
import copy
import re
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from .. import events as ev
from ..errors import NbpipeError
from .actions import PipelineRef, perform
from .log_echo import Echo, join_fetched
from .snapshot import bundle as static_bundle
from .snapshot import mark_floats

if TYPE_CHECKING:
    from ..client import Run

HERE = Path(__file__).parent
MAX_LOG_CHARS = 256 * 1024  # per step, kept from the end: what the widget shows, not the archive
MAX_IMAGE_BYTES = 4 * 1024 * 1024
_IMPORT = re.compile(r'^import\s*\{[^}]*\}\s*from\s*"\./(run_view[\w.]*\.js)";?[ \t]*\n?', re.MULTILINE)
_EXPORT = re.compile(r"^export\s+(?=(?:async\s+)?(?:function|class|const|let)\b)", re.MULTILINE)


def bundle_esm(entry: Path) -> str:
    """One ES module from ``run_view.js`` and its ``run_view_*.js`` siblings.

    anywidget loads ``_esm`` from a ``blob:`` URL, where relative imports cannot resolve, so
    siblings are inlined in dependency order without their import lines and ``export``
    keywords; the entry keeps its exports. Top-level names are unique across the files.
    """
    order: list[Path] = []

    def visit(path: Path, stack: tuple[Path, ...]) -> None:
        if path in order:
            return
        if path in stack:
            raise ValueError(f"Import cycle through {path.name}")
        for dep in _IMPORT.findall(path.read_text(encoding="utf-8")):
            visit(path.with_name(dep), stack + (path,))
        order.append(path)

    visit(entry, ())
    parts = []
    for path in order:
        text = _IMPORT.sub("", path.read_text(encoding="utf-8"))
        if path != entry:
            text = _EXPORT.sub("", text)
        parts.append(f"// ---- {path.name}\n{text}")
    return "\n".join(parts)


def _fresh_step(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": str(spec.get("name", "")),
        "component": spec.get("component") or spec.get("name", ""),
        "display_name": spec.get("display_name") or "",
        "upstream": [str(u) for u in spec.get("upstream") or []],
        "group": spec.get("group") or "",
        "state": "pending",
        "attempt": 0,
        "max_attempts": 1,
        "started_at": None,
        "finished_at": None,
        "duration": None,
        "reason": "",
        "traceback": "",
        "cached": False,
        "inputs": dict(spec.get("inputs") or {}),
        "outputs": {},
    }


def apply_event(snapshot: dict[str, Any], event: ev.Event) -> bool:
    """Fold one event into a run snapshot in place, as ``run_view_state.js`` does in the browser.

    Returns True if the snapshot changed. Events at or below ``last_event_id`` are ignored,
    so replaying a stream over a fresh snapshot is safe.
    """
    if event.id and event.id <= int(snapshot.get("last_event_id") or 0):
        return False
    steps: list[dict[str, Any]] = snapshot.setdefault("steps", [])
    step = next((s for s in steps if s["name"] == getattr(event, "step", None)), None)
    if isinstance(event, ev.RunCreated):
        snapshot.update(
            name=event.name or snapshot.get("name", ""),
            pipeline=event.pipeline or snapshot.get("pipeline", ""),
            experiment=event.experiment,
            params=dict(event.params),
            state="queued",
            created_at=event.ts,
        )
        if event.graph.get("steps"):
            snapshot["steps"] = [_fresh_step(s) for s in event.graph["steps"]]
    elif isinstance(event, ev.RunStarted):
        snapshot.update(state="running", started_at=event.ts)
    elif isinstance(event, ev.RunFinished):
        snapshot.update(
            state=event.state,
            reason=event.reason,
            finished_at=event.ts,
            duration=event.duration or snapshot.get("duration"),
        )
    elif step is None:
        return False  # a step event for a step the snapshot does not know (yet): nothing to fold into
    elif isinstance(event, ev.StepStarted):
        step.update(
            state="running",
            attempt=event.attempt,
            max_attempts=event.max_attempts or step["max_attempts"],
            started_at=event.ts,
            finished_at=None,
            duration=None,
            reason="",
            traceback="",
            cached=False,
        )
    elif isinstance(event, ev.StepRetrying):
        step.update(
            state="retrying",
            attempt=event.attempt,
            reason=event.reason,
            max_attempts=event.max_attempts or step["max_attempts"],
        )
    elif isinstance(event, ev.ArtifactSaved):
        step["outputs"] = {
            **step.get("outputs", {}),
            event.name: {
                "digest": event.digest,
                "kind": event.kind,
                "format": event.format,
                "size": event.size,
                "preview": event.preview,
            },
        }
    elif isinstance(event, ev.StepFinished):
        step.update(
            state=event.state,
            attempt=event.attempt or step["attempt"],
            duration=event.duration,
            reason=event.reason,
            traceback=event.traceback,
            finished_at=event.ts,
            cached=event.state == "cached",
        )
    elif isinstance(event, ev.StepWorkers):  # a distributed step's workers, one entry per rank
        step["workers"] = list(event.workers)
    elif isinstance(event, ev.StepWaiting):  # waits for an identical running step: same state, says so
        step["reason"] = event.reason
    elif not isinstance(event, ev.StepLog):
        return False
    if event.id:
        snapshot["last_event_id"] = event.id
    return not isinstance(event, ev.StepLog)


def image_previews(preview: Any) -> list[tuple[str, str]]:
    """(digest, mime) of every image in a preview, including inside ``multi`` previews."""
    if not isinstance(preview, dict):
        return []
    if preview.get("type") == "image" and preview.get("digest"):
        return [(str(preview["digest"]), str(preview.get("mime") or "image/png"))]
    if preview.get("type") == "multi":
        return [img for item in preview.get("items") or [] for img in image_previews(item)]
    return []


_REUSED = re.compile(r"^reused from run (\S+?)(?: \(step ([^)]+)\))?(?=[ ,.;:]|$)")


def cache_origin(snap: dict[str, Any], name: str) -> tuple[str, str] | None:
    """(run, step) a cached step's outputs came from, as its reason names them (run_view_state.js's
    cacheOrigin reads the same), or None."""
    step = next((s for s in snap.get("steps") or [] if s.get("name") == name), None)
    if not step or step.get("state") != "cached":
        return None
    m = _REUSED.match(str(step.get("reason") or ""))
    return (m.group(1), m.group(2) or name) if m else None


def _snapshot_images(snapshot: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        img
        for s in snapshot.get("steps", [])
        for out in (s.get("outputs") or {}).values()
        for img in image_previews(out.get("preview"))
    ]


_SHOWN: weakref.WeakSet[RunView] = weakref.WeakSet()  # displayed widgets, for settle()


def settle(run_id: str, timeout: float = 5.0) -> None:
    """Wait (at most ``timeout`` s) until every displayed widget of a finished run showed its end.

    ``Run.wait`` calls this, so a notebook run by nbclient (or papermill) whose cell waits for the
    run saves the final snapshot: the update must reach the kernel's output before the cell ends.
    """
    end = time.monotonic() + timeout
    for view in list(_SHOWN):
        if view.run.id == run_id and not view._stopped:
            view.wait(max(0.0, end - time.monotonic()))


class RunView(anywidget.AnyWidget):
    """The live graph of one run. ``RunView(run)`` starts following it; display it like any widget.

    Parameters
    ----------
    run : nbpipe.client.Run
        The run to show (from ``nbpipe.run`` or ``nbpipe.attach``).
    interval : float
        Least time between two updates sent to the front end, in seconds.
    """

    _esm = bundle_esm(HERE / "run_view.js")
    _css = (HERE / "run_view.css").read_text(encoding="utf-8") if (HERE / "run_view.css").is_file() else ""

    snapshot = traitlets.Dict().tag(sync=True)
    logs = traitlets.Dict().tag(sync=True)
    images = traitlets.Dict().tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    # runs this widget showed before the current one (re-runs switch the widget), newest last
    previous = traitlets.List().tag(sync=True)
    # what the last button did or why it could not: {"text", "kind": "info" | "error"}
    notice = traitlets.Dict().tag(sync=True)

    def __init__(self, run: Run, *, interval: float = 0.1, pipeline: PipelineRef = None, **kwargs: Any) -> None:
        snap = run.snapshot()
        super().__init__(snapshot=mark_floats(copy.deepcopy(snap)), **kwargs)
        self.interval = interval
        self.pipeline = pipeline
        self.error = ""
        self._cond = threading.Condition()
        self._stopped = False
        self._gen = 0
        self._finished = threading.Event()  # the stream reached RunFinished (or failed)
        self._synced = threading.Event()  # ...and the front end was sent that final state
        # the display id of this widget's outputs: their static snapshot (SVG + summary, for the
        # saved notebook) is replaced by update_display when the run changes state
        self._display_id = f"nbpipe-view-{self.model_id}"
        self._displayed = False
        self._shown_key: tuple[str, str] = ("", "")
        self._follow_run(run, snap)
        self.on_msg(self._on_msg)
        self.observe(self._on_selected, names="selected")
        threading.Thread(target=self._publish, name=f"nbpipe-publish-{run.id}", daemon=True).start()

    def __repr__(self) -> str:
        return f"<RunView {self.run.id} {self._snap.get('state', '')}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The widget view plus a static snapshot of the run (SVG, summary): what a saved notebook shows."""
        with self._cond:
            snap = copy.deepcopy(self._snap)
            self._shown_key = (str(snap.get("id") or ""), str(snap.get("state") or ""))
        return self._bundle(snap)

    def _bundle(self, snap: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        widget = super()._repr_mimebundle_()
        data, meta = widget if isinstance(widget, tuple) else (widget or {}, {})
        return {**data, **static_bundle(snap, self._display_id)}, dict(meta or {})

    def _ipython_display_(self) -> None:
        """Display with a display id, so the snapshot in this output follows the run's state."""
        from IPython.display import display

        data, meta = self._repr_mimebundle_()
        display(data, metadata=meta, raw=True, display_id=self._display_id)
        self._displayed = True
        _SHOWN.add(self)

    # ------------------------------------------------------------------ public

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run shown now finished and the widget showed it; False on timeout."""
        return self._synced.wait(timeout)

    def switch(self, run: Run) -> None:
        """Show ``run`` instead (a re-run): the current run goes to ``previous``, its stream stops."""
        snap = run.snapshot()
        with self._cond:
            old = self.run
            if old.id != run.id:
                self.previous = [p for p in self.previous if p.get("id") != run.id] + [
                    {"id": old.id, "name": str(self._snap.get("name") or ""), "state": str(self._snap.get("state") or "")}]
            self._follow_run(run, snap)
            self.selected = ""
            self._cond.notify_all()

    def close(self) -> None:
        """Stop following the run and close the widget."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        super().close()

    # ------------------------------------------------------------------ front end → kernel

    def _follow_run(self, run: Run, snap: dict[str, Any]) -> None:
        """Make ``run`` the one shown and start following its events (the caller may hold the lock)."""
        self._gen += 1
        self.run = run
        self._snap = snap
        self._logs: dict[str, str] = {}
        self._echo: dict[str, Echo | None] = {}  # per step: fetched log lines whose events may still come
        self._pending_images: list[tuple[str, str]] = _snapshot_images(snap)
        self._images: dict[str, str] = getattr(self, "_images", {})
        self._want_logs: str | None = None
        self._dirty = True
        self._synced.clear()
        if snap.get("state") in ev.RUN_FINAL:
            self._finished.set()
        else:
            self._finished.clear()
            threading.Thread(target=self._follow, args=(run, self._gen), name=f"nbpipe-follow-{run.id}",
                             daemon=True).start()

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "action":
            return
        action = str(content.get("action") or "")
        payload = content.get("payload") if isinstance(content.get("payload"), dict) else {}
        shown = payload.get("shown")
        if action != "open" and shown and shown != self.run.id:
            # A click on a run the graph no longer shows: a double-click's second click, which
            # arrives after the first one's re-run switched the graph (it would re-run that new run).
            return
        try:
            new, note = perform(self.run, action, payload, self.pipeline)
            if new is not None:
                self.switch(new)
            self.notice = {"text": note, "kind": "info"}
        except NbpipeError as exc:
            self.error = exc.message
            self.notice = {"text": exc.message, "kind": "error"}
            self.send({"type": "error", "message": exc.message})

    def _on_selected(self, change: dict[str, Any]) -> None:
        with self._cond:
            self._want_logs = change["new"] or None
            self._cond.notify_all()

    # ------------------------------------------------------------------ threads

    def _follow(self, run: Run, gen: int) -> None:
        """Consume ``run``'s events while it is the one shown; fold them in; wake the publisher.

        The graph never goes quietly stale: a runner that stops scheduling (its keep-alive comes,
        /health says "stalled") or that goes away puts an error notice in the header saying what
        to do; the notice goes once events flow again."""
        stalled = False

        def quiet() -> None:
            nonlocal stalled
            if self._stopped or gen != self._gen:
                raise _Unfollow  # closed, or showing another run: let go of the stream now
            try:
                run._check_runner(None)
            except NbpipeError as exc:
                if gen == self._gen and not stalled:
                    stalled = True
                    self.error = exc.message
                    self.notice = {"text": exc.message, "kind": "error"}

        try:
            for event in run.client.events(run.id, after=int(self._snap.get("last_event_id") or 0),
                                                follow=True, on_quiet=quiet):
                if stalled and gen == self._gen:
                    stalled = False
                    self.error = ""
                    self.notice = {}
                with self._cond:
                    if self._stopped or gen != self._gen:
                        return
                    changed = apply_event(self._snap, event)
                    if isinstance(event, ev.StepLog):
                        add, more = echo.strip(event.text) if (echo := self._echo.get(event.step)) else (event.text, False)
                        if not more:
                            self._echo.pop(event.step, None)
                        text = self._logs.get(event.step, "") + add
                        self._logs[event.step] = text[-MAX_LOG_CHARS:]
                        changed = event.step == self.selected
                    elif isinstance(event, ev.ArtifactSaved):
                        self._pending_images.extend(image_previews(event.preview))
                    self._dirty = self._dirty or changed
                    self._cond.notify_all()
                if isinstance(event, ev.RunFinished):
                    break
        except _Unfollow:
            return
        except NbpipeError as exc:
            self.error = exc.message
            if gen == self._gen:  # e.g. the runner went away: say so, the graph is no longer live
                self.notice = {"text": f"Stopped following run {run.id}: {exc.message} Then "
                                       f"nbpipe.attach({run.id!r}) shows it live again.", "kind": "error"}
        finally:
            try:  # the authoritative final state, in case the stream ended early
                final = run.snapshot()
            except NbpipeError as exc:
                final = None
                self.error = self.error or exc.message
            previous = self._settled_previous(run) if gen == self._gen else None
            with self._cond:
                if gen == self._gen:
                    if previous is not None and previous != self.previous:
                        self.previous = previous
                    if final is not None:
                        self._snap = final
                    self._dirty = True
                    self._finished.set()
                    self._cond.notify_all()

    def _settled_previous(self, run: Run) -> list[dict[str, Any]]:
        """The runs shown before, with the state each has now: one that was still running when a
        re-run switched the widget away said "running" ever after."""
        out = []
        for p in self.previous:
            if p.get("state") not in ev.RUN_FINAL:
                try:
                    p = {**p, "state": str(run.client.get_run(str(p["id"])).get("state") or p.get("state"))}
                except NbpipeError:
                    pass  # its runner is gone: keep what the widget knew
            out.append(p)
        return out

    def _publish(self) -> None:
        """Send changes to the front end, at most once per ``interval``."""
        last = 0.0
        while True:
            with self._cond:
                while not (self._dirty or self._want_logs or self._stopped):
                    if self._finished.is_set() and not self._pending_images:
                        self._synced.set()
                    self._cond.wait()
                if self._stopped:
                    return
            time.sleep(max(0.0, last + self.interval - time.monotonic()))
            self._load_wanted_logs()
            self._load_images()
            with self._cond:
                gen = self._gen
                snap = copy.deepcopy(self._snap)
                logs = {self.selected: self._logs.get(self.selected, "")} if self.selected else {}
                self._dirty = False
                finished = self._finished.is_set()
            self.snapshot = mark_floats(snap)
            if logs != self.logs:
                self.logs = logs
            if self._images.keys() != self.images.keys():
                self.images = dict(self._images)
            last = time.monotonic()
            self._update_static(snap)
            with self._cond:  # atomic with switch(), which clears it for the next run under the lock
                if finished and snap.get("state") in ev.RUN_FINAL and gen == self._gen:
                    self._synced.set()

    def _update_static(self, snap: dict[str, Any]) -> None:
        """Replace the static snapshot in this widget's outputs when the run (or its state) changed.

        Runs on the publisher thread, before ``wait()`` returns: a notebook executed by nbclient
        whose next cell waits for the run saves the final picture. In Lab the nbpipe extension
        applies the update (the kernel's message belongs to no running cell there).
        """
        key = (str(snap.get("id") or ""), str(snap.get("state") or ""))
        if not self._displayed or key == self._shown_key:
            return
        from IPython.display import update_display

        data, meta = self._bundle(snap)
        self._shown_key = key
        update_display(data, metadata=meta, raw=True, display_id=self._display_id)

    def _load_wanted_logs(self) -> None:
        with self._cond:
            step, self._want_logs = self._want_logs, None
        if not step:
            return
        with self._cond:
            before = self._logs.get(step, "")
        echo = None
        try:
            text = self.run.logs(step)
            origin = None if text else cache_origin(self._snap, step)
            if origin:  # a cached step did not run here: the log of the run its outputs came from
                text = self.run.client.logs(*origin)
        except NbpipeError as exc:
            text = f"(logs unavailable: {exc.message})"
        with self._cond:
            now = self._logs.get(step, "")
            if now.startswith(before) and not text.startswith("(logs unavailable"):
                text, echo = join_fetched(text, now[len(before):])  # the events that came meanwhile
            self._echo[step] = echo
            self._logs[step] = text[-MAX_LOG_CHARS:]
            self._dirty = True

    def _load_images(self) -> None:
        with self._cond:
            pending, self._pending_images = self._pending_images, []
        for digest, mime in pending:
            if digest in self._images:
                continue
            try:
                data = self.run.client.artifact(digest)
            except NbpipeError:
                continue  # the preview shows "not available"; the run itself is unaffected
            if len(data) <= MAX_IMAGE_BYTES:
                self._images[digest] = f"data:{mime};base64,{base64.b64encode(data).decode()}"


def show(run: Run, pipeline: PipelineRef = None) -> RunView:
    """Display the live graph of ``run`` in the notebook and return the widget.

    ``pipeline``: where its buttons find the kernel's current pipeline for re-runs (a name in the
    user namespace or a callable; default: the one pipeline there named like the run's).
    Hook for ``Run._ipython_display_``: ``nbpipe.widgets.show(self)``.
    """
    from IPython.display import display

    view = RunView(run, pipeline=pipeline)
    display(view)
    return view


def attach(run: Run | str, pipeline: PipelineRef = None) -> RunView:
    """A live graph of an existing run (finished or running), e.g. after a kernel restart.

    Returns the widget; it shows where a widget shows (the last line of a cell, ``display``).
    ``nbpipe.attach(run_id)`` returns the run itself, which also displays as this widget.
    """
    from ..client import attach as attach_run

    return RunView(run if not isinstance(run, str) else attach_run(run), pipeline=pipeline)


class _Unfollow(Exception):
    """Raised from the event stream's quiet hook: the widget no longer follows that run."""


def reconnect(run_id: str, view: str = "") -> str:
    """For the Lab extension's re-connect button: a live widget of ``run_id`` for a saved output
    whose widget is gone (kernel restarted). Returns the new widget's model id.

    ``view``: the display id of that output; a running run updates its snapshot there when its
    state changes. A finished run sends nothing, so re-connecting never changes a notebook.
    """
    widget = attach(run_id)
    if view:
        with widget._cond:
            widget._display_id = view
            widget._shown_key = (str(widget._snap.get("id") or ""), str(widget._snap.get("state") or ""))
            widget._displayed = True
        _SHOWN.add(widget)
    return str(widget.model_id)
