"""Deep retraining in a child process.

Deep training imports torch, torchvision and timm. In the app's own process that import
holds Python's interpreter lock for a few hundred milliseconds while native libraries
initialise, and the window freezes meanwhile, whichever thread does it. A child process
keeps the app's interpreter free: it trains, exports the new backbone to ONNX for the
CPU engine, and reports progress and the outcome through its pipe (tagger.common.child_process). The child only writes
model files (atomically, before any version points at them); the library database stays
with its one writer in the parent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tagger.common.cancellation import CancelCheck
from tagger.common.child_process import ChildProcess, Parent, standing_in
from tagger.domain import ModelVersion
from tagger.errors import ChildTrainingError, TrainingCancelled, TrainingError

ProgressCallback = Callable[[int, int, float, "float | None"], None]


def train_in_child_process(
    library_root: Path,
    current: ModelVersion,
    classes: Sequence[str],
    *,
    models_dir: Path,
    mode: str,
    device: str | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    deep_settings=None,  # tagger.training.deep.DeepSettings; not imported here: it needs torch
):
    """Run tagger.training.retraining.train in a fresh interpreter; same results and exceptions as train."""
    child = ChildProcess(
        _child_main,
        str(library_root),
        current,
        tuple(classes),
        str(models_dir),
        mode,
        device,
        deep_settings,
        name="tagger-training",
        # Not a daemon: on a GPU, Deep training decodes photos in DataLoader processes of its
        # own, and a daemonic process may not start children. The finally below still stops
        # it, as does the app's exit, and the child stops by itself if the app dies.
        daemon=False,
    )
    try:
        kind, payload = child.receive(should_cancel, notes={"progress": lambda step: progress and progress(*step)})
    finally:
        child.stop()  # it has answered, or this thread was interrupted: "stop", a grace, terminate
    if kind == "result":
        return payload
    if kind == "cancelled":
        raise TrainingCancelled()
    if kind == "died":
        raise ChildTrainingError(f"training stopped unexpectedly (exit code {payload})")
    raise payload  # "error": TrainingError (the labels do not allow it) or ChildTrainingError


def _child_main(
    parent: Parent,
    library_root: str,
    current: ModelVersion,
    classes: tuple[str, ...],
    models_dir: str,
    mode: str,
    device: str | None,
    deep_settings,
) -> None:  # noqa: ANN001 - DeepSettings
    from tagger.library.library import Library
    from tagger.training.retraining import train

    def report(step: int, total: int, loss: float, accuracy: float | None) -> None:
        parent.send("progress", (step, total, float(loss), accuracy))

    # A cancel, a stop, and the app's death alike: an orphaned child must not train on, holding
    # the GPU, for minutes.
    reader = Library(Path(library_root), readonly=True)
    try:
        outcome = train(
            reader,
            current,
            classes,
            models_dir=Path(models_dir),
            mode=mode,
            progress=report,
            should_cancel=parent.cancel_requested,
            device=device,
            deep_settings=deep_settings,
        )
        if outcome.backbone_file is not None:
            _export_for_cpu(outcome.backbone_file, Path(models_dir).parent / "cache")
        parent.send("result", outcome)
    except TrainingCancelled:
        parent.send("cancelled")
    except TrainingError as error:
        parent.send("error", TrainingError(str(error)))
    except BaseException as error:  # noqa: BLE001 - the parent reports it; a child has no one else to tell
        parent.send(
            "error",
            standing_in(
                error, "the training process", ChildTrainingError, f"training failed: {type(error).__name__}: {error}"
            ),
        )
    finally:
        reader.close()


def _export_for_cpu(backbone_file: Path, cache_dir: Path) -> None:
    import torch

    from tagger.inference.onnx_export import export_loaded_backbone
    from tagger.inference.tuned_backbone import load_finetuned_backbone

    cache_dir.mkdir(exist_ok=True)
    backbone = load_finetuned_backbone(backbone_file, torch.device("cpu"))
    export_loaded_backbone(cache_dir, backbone, backbone.name)
