"""A step pod's log: streamed into the attempt's log file while it runs, completed when the pod ends.

:class:`PodLogs` is the part of :class:`.kubernetes.KubernetesExecutor` that reads logs: the
``follow`` stream (ended by the entrypoint's last line, :func:`.k8s_watch.log_end_line`), and once
the container ended the rest of the log in one read, from the copy the entrypoint uploaded to the
store or from the kubelet. Non-goal: distributed steps' logs (see :mod:`.k8s_gang`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any, Callable

from .k8s_pod import CONTAINER
from .k8s_watch import _partial_end, log_end_line

log = logging.getLogger("nbpipe.executors.kubernetes")


def follow_log(api: Any, pod: str, namespace: str, container: str, stop: threading.Event,
               read: Callable[[Any], bool]) -> bool:
    """Follow a container's log, reconnecting when the stream drops; True when it was read to its end.

    ``read`` consumes one connection's ``follow`` stream (each starts again from the log's first
    byte) and says whether the log is complete. False when the pod is gone, ``stop`` is set while
    waiting to reconnect, or 20 connections failed (the caller then completes the log when the pod
    ends).
    """
    from kubernetes.client.exceptions import ApiException

    for _ in range(20):
        try:
            resp = api.read_namespaced_pod_log(pod, namespace, container=container, follow=True,
                                               _preload_content=False)
            return read(resp)
        except ApiException as exc:
            if exc.status == 404:
                return False
            log.info("log stream of %s failed (%s); retrying", pod, exc.status)
        except Exception as exc:  # noqa: BLE001 - connection dropped mid-stream: resume
            log.info("log stream of %s dropped (%s); resuming", pod, exc)
        if stop.wait(0.5):
            return False
    return False


class PodLogs:
    """Log reading for the executor (needs its ``api`` and a ``_stores`` dict)."""

    api: Any
    _stores: dict[str, Any]

    def _stream_logs(self, att: Any) -> bool:
        """Append the container's log to ``att.log_path`` while it runs; True when it was read to its end.

        The end is the stream's end, or the entrypoint's last line (:func:`log_end_line`, not written to
        the file): once the container ended, the kubelet closes a ``follow`` stream only on its next
        check (every second on a real node), while that line arrives as soon as it is printed.
        """
        end = log_end_line(att.log_end) if att.log_end else b""

        def read(resp: Any) -> bool:
            with open(att.log_path, "ab") as fh:
                pos = 0  # every (re)connection reads the log from its first byte: skip what we have
                held = b""  # read past att.written but not written: it may be the start of the end line
                for chunk in resp.stream(65536):
                    start, pos = pos, pos + len(chunk)
                    with att.log_lock:
                        if att.log_taken:  # _finish completed the log: drop this connection, unread
                            resp.close()
                            return True
                        seen = att.written + len(held)
                        if pos <= seen:
                            continue
                        held += chunk[max(0, seen - start):]
                        at = held.find(end) if end else -1
                        piece = held[:at] if at >= 0 else held[:len(held) - _partial_end(held, end)]
                        held = held[len(piece):]
                        if piece:
                            fh.write(piece)
                            fh.flush()
                            att.written += len(piece)
                        if at >= 0:  # the entrypoint is done: the log is complete
                            att.log_taken = True
                            resp.close()
                            return True
                if held:
                    with att.log_lock:
                        if not att.log_taken:
                            fh.write(held)
                            att.written += len(held)
                resp.release_conn()
            return True

        return follow_log(self.api, att.pod, att.namespace, CONTAINER, att.stop_logs, read)

    def _store(self, config: dict[str, Any]) -> Any:
        """The store of a job's config, opened once (an S3Store checks its bucket when opened)."""
        key = json.dumps(config, sort_keys=True)
        if key not in self._stores:
            from ..stores import open_store

            self._stores[key] = open_store(config)
        return self._stores[key]

    def _log_from_store(self, att: Any) -> None:
        """Use the log the entrypoint uploaded when the pod's own log stream was cut short."""
        try:
            data = self._store(att.store).get_bytes(att.log_key)
        except Exception:  # noqa: BLE001 - no uploaded log (the pod never ran the entrypoint)
            return
        have = os.path.getsize(att.log_path) if os.path.exists(att.log_path) else 0
        if len(data) > have:
            with open(att.log_path, "ab") as fh:
                fh.write(data[have:])

    def _take_log(self, att: Any, from_store: bool = False) -> bool:
        """Complete the attempt's log from the ended container's whole log; True when done.

        A finished container's log is complete at once, but the kubelet closes a ``follow``
        stream only on its next check (every second on a real node): read the log in one
        request instead, write what the stream has not, and stop the stream from writing more.
        ``from_store``: read the copy the entrypoint uploaded before it exited instead (the same
        bytes: it tees fds 1 and 2 to both; one store read is cheaper than the kubelet's log through
        the API server). Used only if it starts with what the stream already wrote.
        """
        try:
            if from_store:
                data = self._store(att.store).get_bytes(att.log_key)
            else:
                resp = self.api.read_namespaced_pod_log(att.pod, att.namespace, container=CONTAINER,
                                                        _preload_content=False)
                data = resp.data
        except Exception as exc:  # noqa: BLE001 - e.g. the node is gone: wait for the stream instead
            log.info("could not read the log of %s at once (%s); waiting for its stream", att.pod, exc)
            return False
        if att.log_end and (at := data.find(log_end_line(att.log_end))) >= 0:
            data = data[:at]
        with att.log_lock:
            if len(data) < att.written:
                return False  # not the log we streamed (cannot happen): keep the stream's
            if from_store and att.written and not _same_tail(att.log_path, data[:att.written]):
                return False  # (a log that went elsewhere than the tee, e.g. a daemon's own writes)
            att.log_taken = True
            if len(data) > att.written:
                with open(att.log_path, "ab") as fh:
                    fh.write(data[att.written:])
                att.written = len(data)
        att.stop_logs.set()
        return True


def _same_tail(path: str, data: bytes, n: int = 4096) -> bool:
    """Whether the file at ``path`` ends with the last ``n`` bytes of ``data`` (and is as long)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - n))
            return size == len(data) and fh.read() == data[-n:]
    except OSError:
        return False
