"""`tagger explain` and `tagger suspects`: the command-line side of explaining and reviewing.

Torch-free at import, like the rest of the command line (`tagger status` must answer at once):
the explain command imports tagger.explain.grad_cam, and with it torch, only when it runs. cli.py
registers both through `add_commands`.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tagger.classifier.head import DEFAULT_CLASSES
from tagger.cli.support import EXIT_OK, library_root, open_library
from tagger.common.atomic import write_atomically
from tagger.errors import CommandError
from tagger.library.library import Library
from tagger.library.store import DATABASE_NAME

CommandFactory = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def add_commands(command: CommandFactory) -> None:
    """Adds `explain` and `suspects` through cli.build_parser's `command` factory."""
    sub = command(
        "explain", run_explain, "write a heatmap of what made the model tag a photo (the photo need not be imported)"
    )
    sub.add_argument("path", metavar="PATH")
    sub.add_argument(
        "--class", dest="class_name", metavar="C", help="class to show the evidence for (default: the model's tag)"
    )
    sub.add_argument(
        "-o", "--output", metavar="OUT.png", required=True, help="image to write: the photo with the heatmap over it"
    )

    sub = command(
        "suspects",
        run_suspects,
        "list your labels that a model trained without them disagrees with, as CSV "
        "(computing the labeled photos' features first where they have none)",
    )
    sub.add_argument("--top", type=int, metavar="N", help="only the N most suspicious")
    sub.add_argument(
        "--folds",
        type=int,
        default=5,
        metavar="K",
        help="cross-validation folds (default 5): each label is judged by a model trained on the other folds",
    )
    sub.add_argument(
        "--device", choices=["cpu", "cuda", "mps"], help="where to compute missing features (default: best available)"
    )


def run_explain(args: argparse.Namespace) -> int:
    from tagger.classifier.head import Head
    from tagger.explain.grad_cam import default_backbone, explain_photo, model_for_version
    from tagger.explain.overlay import overlay
    from tagger.explain.reading import read_evidence

    photo = Path(args.path)
    if not photo.is_file():
        raise CommandError(f"{photo}: no such file")
    output = Path(args.output)
    root = library_root(args)
    version = None
    if (root / DATABASE_NAME).exists():
        # Read-only: explaining never changes the library, and works while the app has it open.
        with Library(root, readonly=True) as library:
            version = library.current_model_version()
            classes = library.class_names()
    else:
        classes = list(DEFAULT_CLASSES)
    if version is not None:
        backbone, head = model_for_version(root, version)
    else:
        backbone = default_backbone()
        head = Head.zero_shot(
            classes, backbone.imagenet_weight, backbone.imagenet_bias, backbone_id=backbone.backbone_id
        )
    if args.class_name is not None and args.class_name not in head.classes:
        raise CommandError(f"no class {args.class_name!r} in the model (classes: {', '.join(head.classes)})")
    explanation = explain_photo(photo, head, args.class_name, backbone)
    write_atomically(output, encode_image(overlay(explanation.rgb, explanation.heat), output.suffix))
    tag = explanation.tag
    model = f"model version {version.id}" if version is not None else "zero-shot model"
    print(
        f"{photo}: tagged {tag} ({100 * explanation.probabilities[tag]:.0f}%) by the {model}; "
        f"evidence for {explanation.class_name} written to {output}"
    )
    for sentence in read_evidence(explanation.evidence):
        print(sentence)
    return EXIT_OK


def encode_image(rgb: np.ndarray, suffix: str) -> bytes:
    import cv2

    extension = suffix.lower() if suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp") else ".png"
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise CommandError(f"could not encode the image as {extension}")
    return encoded.tobytes()


def run_suspects(args: argparse.Namespace) -> int:
    from tagger.cli.training import compute_label_features
    from tagger.explain.review import find_suspects, suspects_csv_rows
    from tagger.tagging.runner import labeled_photos_without_features

    if args.top is not None and args.top < 0:
        raise CommandError("--top must be 0 or more")
    if args.folds < 2:
        raise CommandError("--folds must be at least 2")
    # Read-only when another Tagger is writing: the labels that already have features are judged.
    with open_library(args, readonly=None) as library:
        if not library.readonly:
            compute_label_features(library, args.device)
        unjudged = len(labeled_photos_without_features(library))
        version = library.current_model_version()
        n_labels = len(library.user_labels())
        suspects = find_suspects(library, version, k=args.folds) if version is not None else []
    shown = suspects if args.top is None else suspects[: args.top]
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerows(suspects_csv_rows(shown))
    print(f"{len(suspects)} of your {n_labels} labels look wrong to a model trained without them", file=sys.stderr)
    if unjudged:
        print(
            f"{unjudged} labeled photo(s) were not judged: their features are not computed yet, and the "
            "library can only be read now (another Tagger has it open, or its folder is read-only)",
            file=sys.stderr,
        )
    return EXIT_OK
