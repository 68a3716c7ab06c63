"""`train` and `models`: retraining from the user's labels, and the model history."""

from __future__ import annotations

import argparse
import sys
import time

from tagger.cli.console import ProgressBar
from tagger.cli.support import EXIT_OK, library_after_command, open_library
from tagger.domain import Progress
from tagger.errors import CommandError
from tagger.library.library import Library


def cmd_train(args: argparse.Namespace) -> int:
    from tagger.errors import TrainingError
    from tagger.tagging.runner import retag_from_cache, tag_library
    from tagger.training.retraining import TrainingCancelled, register_outcome, train

    with open_library(args) as library:
        compute_label_features(library, args.device)
        current = library.current_model_version()
        reader = Library(library.root, readonly=True)
        chart = ProgressBar(f"Training ({args.mode})")

        def progress(step: int, total: int, loss: float, accuracy: float | None) -> None:
            text = f"loss {loss:.3f}" + (f", held-out accuracy {100 * accuracy:.1f}%" if accuracy is not None else "")
            chart(Progress(step, total, text))

        try:
            outcome = train(
                reader,
                current,
                library.class_names(),
                models_dir=library.models_dir,
                mode=args.mode,
                progress=progress,
                device=args.device,
            )
        except TrainingError as error:
            raise CommandError(str(error)) from None
        except TrainingCancelled:
            raise KeyboardInterrupt from None
        finally:
            chart.close()
            reader.close()
        make_current = True if args.promote else (False if args.keep else None)
        version = register_outcome(library, outcome, make_current=make_current)
        print(outcome.summary())
        print(_format_comparison(outcome.metrics))
        if not version.is_current:
            print(
                f"version {version.id} kept in the history but NOT made current "
                f"(use `tagger models use {version.id}` to override)"
            )
            return EXIT_OK
        print(f"version {version.id} is now current")
        if outcome.needs_feature_extraction:
            bar = ProgressBar("Re-tagging")
            try:
                tagged = tag_library(library, include_tagged=True, device=args.device, progress=bar)
            finally:
                bar.close()
            print(tagged.describe())
        else:
            print(f"{retag_from_cache(library)} photo(s) re-tagged from cached features")
    return EXIT_OK


def compute_label_features(library: Library, device: str | None = None) -> None:
    """Features for the labeled photos that have none (and the first model, if there is
    none): what training and the suspects learn from. Ctrl+C stops it; what was computed is kept."""
    from tagger.tagging.runner import extract_labeled_features

    bar = ProgressBar("Reading labeled photos")
    try:
        outcome = extract_labeled_features(library, device=device, progress=bar)
    finally:
        bar.close()
    if outcome.labeled_features or outcome.unreadable:
        print(outcome.describe(), file=sys.stderr)
    for path, reason in outcome.unreadable:
        print(f"unreadable\t{path}\t{reason}", file=sys.stderr)


def _format_comparison(metrics: dict) -> str:
    from tagger.training.comparison import headline_text

    lines = [f"new model: {headline_text(metrics)}"]
    new = metrics.get("new") or {}
    for name, stats in (new.get("per_class") or {}).items():
        precision, recall = stats.get("precision"), stats.get("recall")
        lines.append(f"  {name:<14} precision {_pct(precision)}  recall {_pct(recall)}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "  -   " if value is None else f"{100 * value:5.1f}%"


def cmd_models(args: argparse.Namespace) -> int:
    from tagger.inference.networks import network_title
    from tagger.tagging.runner import retag_from_cache
    from tagger.training.comparison import headline_text

    with open_library(args, readonly=args.action == "list") as library:
        if args.action == "use":
            version = library.promote(args.version)
            print(f"version {version.id} ({version.mode}) is current again")
            count = retag_from_cache(library)
            print(
                f"{count} photo(s) re-tagged from cached features"
                + ("" if count else "; run `tagger tag --all` to re-tag from the photos")
            )
        for version in library.model_versions():
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(version.created_at))
            print(
                f"{'*' if version.is_current else ' '} {version.id:>3}  {when}  {version.mode:<9} "
                f"{network_title(version.backbone_id):<18} {version.n_labels:>5} labels  {', '.join(version.classes)}"
                + (f"  ({version.note})" if version.note else "")
            )
            if version.metrics:
                print(f"        {headline_text(version.metrics)}")
    return EXIT_OK


def add_commands(command) -> None:  # noqa: ANN001 - the command line's registration hook
    """Register the training commands with the parser."""
    sub = command("train", cmd_train, "retrain the model on your labels and re-tag the rest")
    sub.add_argument(
        "--mode",
        choices=["quick", "deep"],
        default="quick",
        help="quick: the head on cached features (seconds); deep: also fine-tune the backbone",
    )
    sub.add_argument("--device", choices=["cpu", "cuda", "mps"])
    decision = sub.add_mutually_exclusive_group()
    decision.add_argument("--promote", action="store_true", help="make the new model current even if it scores worse")
    decision.add_argument("--keep", action="store_true", help="keep the current model; only record the new one")

    sub = command("models", cmd_models, "list model versions, or go back to one")
    actions = sub.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser(
        "list", help="the history of model versions (* marks the current one)", parents=[library_after_command()]
    )
    use = actions.add_parser("use", help="make a version current again (roll back)", parents=[library_after_command()])
    use.add_argument("version", type=int)
    sub.set_defaults(action="list")
