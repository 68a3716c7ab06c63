"""Explanations (evidence over the photo, robustness probes) computed in a child process.

Both need the PyTorch model of a version. Loading it in a thread of the app imports torch,
which holds Python's interpreter lock in long stretches: measured with bench/responsiveness.py
on the 2-core machine, the first heatmap froze the window for up to 207 ms (p99 64 ms) while
it loaded. An `Explainer` starts one child at the first request and keeps it, with the last
version's model loaded, for the requests that follow; the app never imports torch for them.

Requests go one at a time. A robustness probe can be cancelled between its steps, and reports
each step; evidence, once started, is computed to its end (and cached on disk either way).
The child writes nothing but the evidence cache's files. It ends when the Explainer is closed,
when the app's end of the pipe closes (the app exited or was killed) and, being a daemon,
when the app's interpreter exits (tagger.common.child_process).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tagger.common.cancellation import CancelCheck, is_cancelled
from tagger.common.child_process import ChildProcess, Parent, passable
from tagger.domain import ModelVersion, Photo
from tagger.errors import ExplanationFailed, ProbeCancelled
from tagger.explain.evidence import Evidence
from tagger.explain.probe_result import ProbeResult

StepCallback = Callable[[int], None]  # steps of a probe done so far
# A probe's steps can follow each other 47 ms apart on the 2-core development machine.
_POLL_S = 0.05


class Explainer:
    """The app's side of the child process; its methods block, so call them from workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one request on the pipe at a time
        self._child: ChildProcess | None = None
        self._closed = False
        self.loads = 0  # models the child loaded: once per version asked about in a row

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        child = self._child
        return child.pid if child is not None and child.is_alive() else None

    def evidence(
        self,
        library_root: Path,
        cache_dir: Path,
        photo: Photo,
        version: ModelVersion,
        class_name: str,
        *,
        cancelled: CancelCheck | None = None,
    ) -> Evidence | None:
        """The evidence for `class_name` on `photo` (grad_cam.evidence_cached); None when
        cancelled before it started or when the explainer was closed."""
        request = {
            "library_root": Path(library_root),
            "cache_dir": Path(cache_dir),
            "photo": photo,
            "version": version,
            "class_name": class_name,
        }
        return self._ask("evidence", request, cancelled, None)

    def probe(
        self,
        library_root: Path,
        photo: Photo,
        version: ModelVersion,
        max_steps: int,
        *,
        cancelled: CancelCheck | None = None,
        on_step: StepCallback | None = None,
    ) -> ProbeResult | None:
        """probe.probe_sensitivity's result for `photo`; None when cancelled or
        when the explainer was closed. `on_step(steps done)` is called before every step."""
        request = {"library_root": Path(library_root), "photo": photo, "version": version, "max_steps": max_steps}
        return self._ask("probe", request, cancelled, on_step)

    def close(self) -> None:
        """Stop the child; requests still waiting return None. Safe to call twice."""
        self._closed = True
        child = self._child
        if child is None:
            return
        idle = self._lock.acquire(blocking=False)
        try:
            # Idle, it is asked to stop. Busy (a model loading, a heatmap), it is terminated:
            # nothing it holds is worth the wait, and the evidence cache is written atomically.
            child.stop(ask=idle, grace_s=5.0 if idle else 0.0)
        finally:
            if idle:
                self._lock.release()

    # -- the app's side of the pipe ----------------------------------------------------------

    def _ask(
        self, kind: str, request: dict[str, Any], cancelled: CancelCheck | None, on_step: StepCallback | None
    ) -> Any:
        while not self._lock.acquire(timeout=_POLL_S):
            if is_cancelled(cancelled) or self._closed:
                return None
        try:
            if is_cancelled(cancelled) or self._closed:
                return None
            child = self._running_child()
            try:
                child.send(kind, request)
            except OSError:
                reply, payload = "died", None
            else:
                reply, payload = child.receive(
                    cancelled,
                    notes={"progress": on_step or (lambda _steps: None), "loaded": self._loaded},
                    poll_s=_POLL_S,
                )
            if reply == "result":
                return payload
            if reply == "cancelled":
                return None
            if reply == "error":
                raise payload  # see tagger.common.child_process
            self._forget_child()  # "died"
            if self._closed:
                return None
            raise ExplanationFailed("the process computing explanations ended unexpectedly")
        finally:
            self._lock.release()

    def _loaded(self, _payload: object) -> None:
        self.loads += 1

    def _running_child(self) -> ChildProcess:
        if self._child is not None and self._child.is_alive():
            return self._child
        self._forget_child()
        self._child = ChildProcess(_serve, name="tagger-explainer")
        return self._child

    def _forget_child(self) -> None:
        if self._child is not None:
            self._child.stop(ask=False, grace_s=0.0)
        self._child = None


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
        from tagger.explain.grad_cam import model_for_version  # imports torch

        self._model = None  # the old model's memory goes before the new one's arrives
        self._model = model_for_version(library_root, version)
        self._version_id = version.id
        return (*self._model, True)


def _serve(parent: Parent) -> None:
    """The child's whole life: answer requests until told to stop or the app has gone."""
    models = _ModelCache()
    while True:
        kind, request = parent.recv()
        if kind == "stop":
            return  # asked, or the app has gone
        if kind == "cancel":
            continue  # it came after its request had finished
        reply = _handle(parent, models, kind, request)
        if reply is None or not parent.send(*reply):
            return


def _handle(parent: Parent, models: _ModelCache, kind: str, request: dict[str, Any]) -> tuple[str, Any] | None:
    """The reply to one request; None when the app asked the child to stop meanwhile."""
    steps = 0

    def should_cancel() -> bool:
        nonlocal steps
        if parent.cancel_requested():
            return True
        parent.send("progress", steps)
        steps += 1
        return False

    try:
        backbone, head, loaded = models.get(request["library_root"], request["version"])
        if loaded:
            parent.send("loaded")
        if kind == "evidence":
            from tagger.explain.grad_cam import evidence_cached

            value = evidence_cached(
                request["cache_dir"], request["photo"], request["version"].id, head, request["class_name"], backbone
            )
        else:
            from tagger.explain.probe import probe_sensitivity

            value = probe_sensitivity(
                request["photo"].path, head, backbone, max_steps=request["max_steps"], should_cancel=should_cancel
            )
        return "result", value
    except ProbeCancelled:
        return None if parent.stopping else ("cancelled", None)
    except Exception as error:  # noqa: BLE001 - the app hears why (tagger.common.child_process)
        return "error", passable(error, "the explainer process", ExplanationFailed)
