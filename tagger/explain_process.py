"""Explanations (evidence heatmaps, robustness probes) computed in a child process.

Both need the PyTorch model of a version. Loading it in a thread of the app imports torch,
which holds Python's interpreter lock in long stretches: measured with bench/responsiveness.py
on the 2-core machine, the first heatmap froze the window for up to 207 ms (p99 64 ms) while
it loaded. An `Explainer` starts one child at the first request and keeps it, with the last
version's model loaded, for the requests that follow; the app never imports torch for them.

Requests go one at a time. A robustness probe can be cancelled between its steps, and reports
each step; a heatmap, once started, runs to its end (its map is cached on disk either way). The child writes nothing but the heatmap cache's files. It ends
when the Explainer is closed, when the app's end of the pipe closes (the app exited or was
killed) and, being a daemon, when the app's interpreter exits.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tagger.cancellation import CancelCheck, is_cancelled
from tagger.child_call import passable
from tagger.domain import ModelVersion, Photo
from tagger.probe_result import ProbeResult

StepCallback = Callable[[int], None]  # steps of a probe done so far
_POLL_S = 0.05
_STOP_GRACE_S = 5.0


class ExplanationFailed(RuntimeError):
    """The explainer's child process died, or failed with an error of Tagger's own (its message)."""


class Explainer:
    """The app's side of the child process; its methods block, so call them from workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one request on the pipe at a time
        self._process: Any = None
        self._connection: Any = None
        self._closed = False
        self.loads = 0  # models the child loaded: once per version asked about in a row

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def heatmap(self, library_root: Path, cache_dir: Path, photo: Photo, version: ModelVersion,
                class_name: str, *, cancelled: CancelCheck | None = None) -> np.ndarray | None:
        """The evidence heatmap of `class_name` on `photo` (explain.heatmap_cached); None when
        cancelled before it started or when the explainer was closed."""
        request = {"library_root": Path(library_root), "cache_dir": Path(cache_dir), "photo": photo,
                   "version": version, "class_name": class_name}
        return self._ask("heatmap", request, cancelled, None)

    def probe(self, library_root: Path, photo: Photo, version: ModelVersion, max_steps: int, *,
              cancelled: CancelCheck | None = None, on_step: StepCallback | None = None) -> ProbeResult | None:
        """explain_probe.probe_sensitivity's result for `photo`; None when cancelled or
        when the explainer was closed. `on_step(steps done)` is called before every step."""
        request = {"library_root": Path(library_root), "photo": photo, "version": version, "max_steps": max_steps}
        return self._ask("probe", request, cancelled, on_step)

    def close(self) -> None:
        """Stop the child; requests still waiting return None. Safe to call twice."""
        self._closed = True
        process, connection = self._process, self._connection
        if process is None:
            return
        if self._lock.acquire(blocking=False):  # idle: it can be asked
            try:
                with contextlib.suppress(OSError):  # already gone
                    connection.send(("stop", None))
                    process.join(_STOP_GRACE_S)
            finally:
                self._lock.release()
        if process.is_alive():
            # Busy (a model loading, a heatmap): nothing it holds is worth the wait, and the
            # heatmap cache is written atomically.
            process.terminate()
            process.join(_STOP_GRACE_S)

    # -- the app's side of the pipe ----------------------------------------------------------

    def _ask(self, kind: str, request: dict[str, Any], cancelled: CancelCheck | None,
             on_step: StepCallback | None) -> Any:
        while not self._lock.acquire(timeout=_POLL_S):
            if is_cancelled(cancelled) or self._closed:
                return None
        try:
            if is_cancelled(cancelled) or self._closed:
                return None
            connection = self._running_child()
            try:
                connection.send((kind, request))
                return self._answer(connection, cancelled, on_step)
            except (EOFError, OSError) as error:
                self._forget_child()
                if self._closed:
                    return None
                raise ExplanationFailed("the process computing explanations ended unexpectedly") from error
        finally:
            self._lock.release()

    def _answer(self, connection: Any, cancelled: CancelCheck | None, on_step: StepCallback | None) -> Any:
        cancel_sent = False
        while True:
            # Asked before every wait, not only when a wait times out: a probe's steps can
            # follow each other faster than the wait (47 ms apart on this 2-core machine).
            if not cancel_sent and is_cancelled(cancelled):
                connection.send(("cancel", None))
                cancel_sent = True
            if not connection.poll(_POLL_S):
                continue
            kind, payload, *loaded = connection.recv()
            if kind == "progress":
                if on_step is not None:
                    on_step(payload)
                continue
            self.loads += bool(loaded and loaded[0])
            if kind == "result":
                return payload
            if kind == "cancelled":
                return None
            raise payload  # "error": see tagger.child_call

    def _running_child(self) -> Any:
        if self._process is not None and self._process.is_alive():
            return self._connection
        self._forget_child()
        # spawn, never fork: the app has threads (Qt's among them) that a fork would copy mid-flight.
        context = multiprocessing.get_context("spawn")
        app_end, child_end = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_end,), name="tagger-explainer", daemon=True)
        self._process.start()
        child_end.close()  # so that the child's death reads as the end of the pipe here
        self._connection = app_end
        return app_end

    def _forget_child(self) -> None:
        if self._connection is not None:
            self._connection.close()
        if self._process is not None:
            self._process.join(0)
        self._process = self._connection = None


# -- the child ---------------------------------------------------------------------------------


class _ModelCache:
    """The last version's (backbone, head): the next explanation is most likely of the same."""

    def __init__(self) -> None:
        self._version_id: int | None = None
        self._model: tuple[Any, Any] | None = None

    def get(self, library_root: Path, version: ModelVersion) -> tuple[Any, Any, bool]:
        """(backbone, head, whether it was loaded just now)."""
        if self._model is not None and self._version_id == version.id:
            return (*self._model, False)
        from tagger.explain import model_for_version  # imports torch

        self._model = None  # the old model's memory goes before the new one's arrives
        self._model = model_for_version(library_root, version)
        self._version_id = version.id
        return (*self._model, True)


def _serve(connection: Any) -> None:
    """The child's whole life: answer requests until told to stop or the app has gone."""
    models = _ModelCache()
    while True:
        try:
            kind, request = connection.recv()
        except (EOFError, OSError):
            return
        if kind == "stop":
            return
        if kind == "cancel":
            continue  # it came after its request had finished
        reply = _handle(connection, models, kind, request)
        if reply is None:
            return
        try:
            connection.send(reply)
        except OSError:
            return


def _handle(connection: Any, models: _ModelCache, kind: str, request: dict[str, Any]) -> tuple | None:
    """The reply to one request; None when the app asked the child to stop meanwhile."""
    from tagger.explain_probe import ProbeCancelled

    loaded = False
    stop_asked = False
    steps = 0

    def should_cancel() -> bool:
        nonlocal steps, stop_asked
        if connection.poll():
            message_kind, _ = connection.recv()
            stop_asked = message_kind == "stop"
            return True  # "cancel" or "stop"
        connection.send(("progress", steps))
        steps += 1
        return False

    try:
        backbone, head, loaded = models.get(request["library_root"], request["version"])
        if kind == "heatmap":
            from tagger.explain import heatmap_cached

            value = heatmap_cached(request["cache_dir"], request["photo"], request["version"].id, head,
                                   request["class_name"], backbone)
        else:
            from tagger.explain_probe import probe_sensitivity

            value = probe_sensitivity(request["photo"].path, head, backbone, max_steps=request["max_steps"],
                                      should_cancel=should_cancel)
        return ("result", value, loaded)
    except ProbeCancelled:
        return None if stop_asked else ("cancelled", None, loaded)
    except Exception as error:  # noqa: BLE001 - the app hears why (tagger.child_call)
        return ("error", passable(error, "the explainer process", ExplanationFailed), loaded)
