"""Deep retraining in a child process.

Deep training imports torch, torchvision and timm. In the app's own process that import
holds Python's interpreter lock for a few hundred milliseconds while native libraries
initialise, and the window freezes meanwhile, whichever thread does it. A child process
keeps the app's interpreter free: it trains, exports the new backbone to ONNX for the
CPU engine, and reports progress and the outcome through a queue. The child only writes
model files (atomically, before any version points at them); the library database stays
with its one writer in the parent."""

from __future__ import annotations

import atexit
import multiprocessing
import queue
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tagger.cancellation import CancelCheck, is_cancelled
from tagger.domain import ModelVersion

ProgressCallback = Callable[[int, int, float, "float | None"], None]
_POLL_S = 0.1
# After a cancel, how long the child gets to stop by itself before it is terminated.
_STOP_GRACE_S = 5.0


class ChildTrainingError(RuntimeError):
    """The child process died or failed in an unexpected way; the message says how."""


# Children still training, with their cancel events. The child is not a daemon (see below),
# so an interpreter that exits while some thread still waits on one would otherwise wait for
# the training to end: at exit they are cancelled, then terminated after a grace period.
_running: dict[Any, Any] = {}
_running_lock = threading.Lock()


def _stop_children_at_exit() -> None:
    with _running_lock:
        children = list(_running.items())
    for _child, cancel in children:
        cancel.set()
    for child, _cancel in children:
        child.join(_STOP_GRACE_S)
        if child.is_alive():
            child.terminate()


# Registered after multiprocessing's own exit handler, so it runs first (atexit is LIFO).
atexit.register(_stop_children_at_exit)


def train_in_child_process(
    database_path: Path,
    current: ModelVersion,
    classes: Sequence[str],
    *,
    models_dir: Path,
    mode: str,
    device: str | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    deep_settings=None,  # tagger.deep_training.DeepSettings; not imported here: it needs torch
):
    """Run tagger.training.train in a fresh interpreter; same results and exceptions as train."""
    from tagger.training import TrainingCancelled, TrainingError

    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    cancel = context.Event()
    child = context.Process(
        target=_child_main,
        args=(str(database_path), current, tuple(classes), str(models_dir), mode, device, deep_settings,
              messages, cancel),
        name="tagger-training",
        # Not a daemon: on a GPU, Deep training decodes photos in DataLoader processes of its
        # own, and a daemonic process may not start children. The finally below still stops
        # it, and the child stops by itself if this process dies (see _child_main).
        daemon=False,
    )
    child.start()
    with _running_lock:
        _running[child] = cancel
    try:
        while True:
            if is_cancelled(should_cancel):
                cancel.set()
            try:
                kind, *payload = messages.get(timeout=_POLL_S)
            except queue.Empty:
                if not child.is_alive():
                    raise ChildTrainingError(f"training stopped unexpectedly (exit code {child.exitcode})") from None
                continue
            if kind == "progress":
                if progress is not None:
                    progress(*payload)
            elif kind == "done":
                return payload[0]
            elif kind == "cancelled":
                raise TrainingCancelled()
            elif kind == "refused":
                raise TrainingError(payload[0])
            else:
                raise ChildTrainingError(f"training failed: {payload[0]}")
    finally:
        if child.is_alive():
            cancel.set()
            child.join(_STOP_GRACE_S)
            if child.is_alive():
                child.terminate()
        child.join(_STOP_GRACE_S)
        with _running_lock:
            _running.pop(child, None)
        messages.close()


def _child_main(database_path: str, current: ModelVersion, classes: tuple[str, ...], models_dir: str, mode: str,
                device: str | None, deep_settings, messages, cancel) -> None:  # noqa: ANN001 - multiprocessing objects
    from tagger.store import Store
    from tagger.training import TrainingCancelled, TrainingError, train

    def report(step: int, total: int, loss: float, accuracy: float | None) -> None:
        messages.put(("progress", step, total, float(loss), accuracy))

    parent = multiprocessing.parent_process()

    def should_stop() -> bool:
        # A parent killed outright cannot set the event: its death counts as a cancel, so
        # an orphaned child does not train on, holding the GPU, for minutes.
        return cancel.is_set() or (parent is not None and not parent.is_alive())

    reader = Store(Path(database_path), readonly=True)
    try:
        outcome = train(reader, current, classes, models_dir=Path(models_dir), mode=mode, progress=report,
                        should_cancel=should_stop, device=device, deep_settings=deep_settings)
        if outcome.backbone_file is not None:
            _export_for_cpu(outcome.backbone_file, Path(models_dir).parent / "cache")
        messages.put(("done", outcome))
    except TrainingCancelled:
        messages.put(("cancelled",))
    except TrainingError as error:
        messages.put(("refused", str(error)))
    except BaseException:  # noqa: BLE001 - the parent reports it; a child has no one else to tell
        messages.put(("failed", traceback.format_exc(limit=5)))
    finally:
        reader.close()


def _export_for_cpu(backbone_file: Path, cache_dir: Path) -> None:
    import torch

    from tagger.engine import DEFAULT_BACKBONE, export_loaded_backbone
    from tagger.tuned_backbone import load_finetuned_backbone

    cache_dir.mkdir(exist_ok=True)
    export_loaded_backbone(cache_dir, load_finetuned_backbone(backbone_file, torch.device("cpu")), DEFAULT_BACKBONE)
