"""`tagger eval DIR`: score the current model on a folder sorted by class, adding nothing.

DIR holds one sub-folder per class, named after it. Folders whose name is one of the
model's classes are scored (accuracy, per-class precision and recall, confusion);
folders the model has no class for (cow and horse, before the user adds them) are
reported as "how they were tagged", which is what a user wants to know about them."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagger.classifier.evaluation import evaluate, format_report
from tagger.classifier.head import Head
from tagger.domain import Progress
from tagger.inference.choice import open_engine
from tagger.inference.pipeline import decode_for_model
from tagger.library.library import Library


@dataclass
class FolderEvaluation:
    classes: list[str]
    report: dict | None
    tagged_as: dict[str, dict[str, int]]  # folder -> model class -> count
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = ""
    model: str = ""

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "engine": self.engine,
            "classes": self.classes,
            "report": self.report,
            "tagged_as": self.tagged_as,
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
            "seconds": round(self.seconds, 2),
        }

    def format(self) -> str:
        lines = [f"Model: {self.model} ({self.engine}), {self.seconds:.1f} s"]
        if self.report is not None:
            lines += ["", format_report(self.report)]
        lines += ["", "How each folder was tagged:"]
        for folder, counts in self.tagged_as.items():
            total = sum(counts.values())
            parts = ", ".join(
                f"{name} {n} ({100 * n / total:.0f}%)" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])
            )
            marker = "" if folder in self.classes else "  (not a class of the model)"
            lines.append(f"  {folder:<12} {total:>5} photos: {parts}{marker}")
        if self.unreadable:
            lines += ["", f"{len(self.unreadable)} unreadable file(s):"]
            lines += [f"  {path}: {reason}" for path, reason in self.unreadable]
        return "\n".join(lines)


def evaluate_folder(
    library: Library,
    folder: Path,
    *,
    device: str | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> FolderEvaluation:
    from tagger.inference.pipeline import tag_photos
    from tagger.library.importer import iter_candidate_files

    folder = Path(folder)
    class_folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_folders:
        raise ValueError(f"{folder} has no sub-folders; expected one per class")
    unreadable: list[tuple[str, str]] = []
    items: list[tuple[int, str]] = []
    truth: list[str] = []
    for class_folder in class_folders:
        for path in iter_candidate_files([class_folder], lambda p, reason: unreadable.append((str(p), reason))):
            items.append((len(items), path))
            truth.append(class_folder.name)

    version = library.current_model_version()
    engine = open_engine(device, library.cache_dir, version, library.root)
    if version is not None:
        head = Head.load(library.model_file(version.head_file))
        if head.classes != library.class_names():
            head = head.with_classes(library.class_names())
        model_name = f"version {version.id} ({version.mode})"
    else:
        weight, bias = engine.imagenet_classifier()
        head = Head.zero_shot(library.class_names(), weight, bias, backbone_id=engine.backbone_id)
        model_name = "zero-shot"

    started = time.monotonic()
    predicted: dict[int, str] = {}
    probabilities: dict[int, np.ndarray] = {}

    def report_progress(done: int, total: int) -> None:
        if progress is not None:
            elapsed = time.monotonic() - started
            progress(Progress(done, total, rate_per_s=done / elapsed if elapsed > 0.5 else None))

    for batch in tag_photos(items, engine, head, decode_for_model(engine.preprocessing), progress=report_progress):
        for result in batch:
            if result.ok:
                probabilities[result.photo_id] = result.probabilities
                predicted[result.photo_id] = head.classes[int(np.argmax(result.probabilities))]
            else:
                reason = result.error.split(": ", 1)[-1]
                unreadable.append((items[result.photo_id][1], reason))

    tagged_as: dict[str, Counter] = {}
    for index, label in enumerate(truth):
        if index in predicted:
            tagged_as.setdefault(label, Counter())[predicted[index]] += 1
    scored = [i for i in predicted if truth[i] in head.classes]
    report = None
    if scored:
        report = evaluate([truth[i] for i in scored], np.stack([probabilities[i] for i in scored]), head.classes)
    return FolderEvaluation(
        classes=list(head.classes),
        report=report,
        tagged_as={name: dict(counts) for name, counts in tagged_as.items()},
        unreadable=unreadable,
        seconds=time.monotonic() - started,
        engine=engine.describe(),
        model=model_name,
    )
