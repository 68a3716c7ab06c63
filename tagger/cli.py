"""The command line, over the same library as the GUI.

Each command opens the library, does one job and closes it; heavy modules
(torch, the model) are imported inside the commands that need them, so
`tagger status` answers at once."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tagger import __version__
from tagger.console import ProgressBar
from tagger.domain import Progress
from tagger.head import HeadError
from tagger.library import Library, LibraryError
from tagger.locking import LibraryBusyError
from tagger.paths import default_library_dir
from tagger.store import StoreError, is_disk_full

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A failure the user can act on; printed without a traceback."""


# -- commands -------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    from tagger.importer import import_paths

    missing = [p for p in args.paths if not Path(p).exists()]
    for path in missing:
        print(f"tagger: {path}: no such file or folder", file=sys.stderr)
    present = [p for p in args.paths if p not in missing]
    if not present:
        raise CommandError("nothing to import")
    with _open_library(args) as library:
        bar = ProgressBar("Importing")
        try:
            summary = import_paths(library, present, progress=bar)
        finally:
            bar.close()
    for path in summary.added if args.verbose else ():
        print(f"added\t{path}")
    for path, twin in summary.duplicates:
        print(f"duplicate\t{path}\t(same as {twin})")
    for path, reason in summary.unreadable:
        print(f"unreadable\t{path}\t{reason}")
    for old, new in summary.moved:
        print(f"moved\t{old}\t-> {new}")
    for path in summary.missing:
        print(f"missing\t{path}")
    print(summary.describe())
    return EXIT_FAILURE if missing else EXIT_OK


def cmd_tag(args: argparse.Namespace) -> int:
    from tagger.runner import tag_library

    with _open_library(args) as library:
        bar = ProgressBar("Tagging")
        try:
            outcome = tag_library(library, include_tagged=args.all, device=args.device, progress=bar)
        finally:
            bar.close()
    print(outcome.describe())
    return EXIT_OK


def cmd_label(args: argparse.Namespace) -> int:
    label = None if args.clear else args.label
    if label is None and not args.clear:
        raise CommandError("say which class with --as CLASS, or --clear")
    with _open_library(args) as library:
        photos = []
        for path in args.paths:
            photo = library.photo_by_path(path)
            if photo is None:
                raise CommandError(f"{path} is not in the library (import it first)")
            photos.append(photo)
        library.set_user_labels([p.id for p in photos], label)
    verb = "cleared" if label is None else f"labeled {label}"
    print(f"{len(photos)} photo(s) {verb}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    with _open_library(args, readonly=True) as library:
        status = library.status()
        versions = library.model_versions()
    if args.json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    print(f"Library: {status['library']}")
    print(f"Photos: {status['photos']} ({status['unreadable']} unreadable, {status['missing']} missing)")
    print(f"Labeled by you: {status['user_labeled']}   by the model: {status['model_labeled']}   "
          f"unlabeled: {status['unlabeled']}")
    for name, counts in status["classes"].items():
        print(f"  {name:<16} {counts['user']:>7} yours  {counts['model']:>7} model")
    current = next((v for v in versions if v.is_current), None)
    if current:
        print(f"Model: version {current.id} ({current.mode}, {len(versions)} version(s) in history)")
    else:
        print("Model: zero-shot (not used yet)")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from tagger import exporting

    include_model = not args.user_only
    if args.format == "xmp":
        from tagger import xmp

        with _open_library(args) as library:
            plan = xmp.plan_xmp_changes(library, None, embed=args.embed, include_model_labels=include_model)
            for change in plan:
                if change.action != "unchanged":
                    print(f"{change.action}\t{change.target_path}\t{', '.join(change.tagger_keywords)}"
                          + (f"\t({change.problem})" if change.problem else ""))
            if args.dry_run:
                print("dry run: nothing written")
                return EXIT_OK
            result = xmp.apply_xmp_changes(plan)
        print(result.describe())
        return EXIT_FAILURE if result.failed else EXIT_OK
    with _open_library(args, readonly=None) as library:
        rows = exporting.export_rows(library)
    if args.user_only:
        rows = [row for row in rows if row.source == "user"]
    if args.format == "csv":
        def writer(stream):
            return exporting.write_csv(rows, stream, include_date=args.with_date)
    else:
        def writer(stream):
            return exporting.write_json(rows, stream)
    if args.output in (None, "-"):
        writer(sys.stdout)
    else:
        from tagger.user_files import user_text_writer

        with user_text_writer(Path(args.output)) as stream:
            writer(stream)
        print(f"{len(rows)} photo(s) exported to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_export_model(args: argparse.Namespace) -> int:
    from tagger.model_export import export_model

    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _open_library(args, readonly=None) as library:
        exported = export_model(library, out_dir)
    for path in exported.paths:
        print(path)
    return EXIT_OK


def cmd_import_labels(args: argparse.Namespace) -> int:
    from tagger import exporting

    with _open_library(args) as library:
        if args.csv:
            with open(args.csv, encoding="utf-8-sig", newline="") as stream:
                summary = exporting.import_labels_csv(library, stream, create_classes=args.create_classes,
                                                      base_dir=Path(args.csv).resolve().parent)
        else:
            if not Path(args.tree).is_dir():
                raise CommandError(f"{args.tree} is not a folder")
            bar = ProgressBar("Importing")
            try:
                summary = exporting.import_label_tree(library, args.tree, create_classes=args.create_classes,
                                                      progress=bar)
            finally:
                bar.close()
    print(summary.describe())
    return EXIT_OK


def cmd_sort(args: argparse.Namespace) -> int:
    from tagger.sorting import apply_sort, plan_sort

    with _open_library(args) as library:
        plan = plan_sort(library, Path(args.destination), None, "move" if args.move else "copy",
                         unlabeled_folder=args.unlabeled_folder, include_model_labels=not args.user_only)
        print(plan.describe())
        if args.dry_run:
            for item in plan.items:
                print(f"{item.source}\t-> {item.destination}")
            return EXIT_OK
        bar = ProgressBar("Sorting")
        try:
            result = apply_sort(library, plan, progress=bar)
        finally:
            bar.close()
    print(result.describe())
    return EXIT_FAILURE if result.failed else EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from tagger.folder_eval import evaluate_folder

    folder = Path(args.folder)
    if not folder.is_dir():
        raise CommandError(f"{folder} is not a folder (expected one sub-folder per class)")
    with _open_library(args, readonly=None) as library:
        bar = ProgressBar("Evaluating")
        try:
            report = evaluate_folder(library, folder, device=args.device, progress=bar)
        finally:
            bar.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.format())
    return EXIT_OK


def cmd_classes(args: argparse.Namespace) -> int:
    action = args.action
    with _open_library(args, readonly=action == "list") as library:
        if action == "add":
            library.add_class(args.name)
            print(f"added class {args.name!r}")
        elif action == "rename":
            library.rename_class(args.name, args.new_name)
            print(f"renamed {args.name!r} to {args.new_name!r}")
        elif action == "remove":
            cleared = library.remove_class(args.name)
            print(f"removed class {args.name!r}; {cleared} photo(s) are unlabeled now")
        counts = library.store.class_counts()
        for position, info in enumerate(library.classes(), start=1):
            c = counts.get(info.name, {"user": 0, "model": 0})
            print(f"{position}. {info.name:<16} {c['user']:>6} yours {c['model']:>7} model")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from tagger.runner import retag_from_cache, tag_library
    from tagger.training import TrainingCancelled, TrainingError, register_outcome, train

    with _open_library(args) as library:
        current = library.current_model_version()
        if current is None:
            raise CommandError("there is no model yet: run `tagger tag` once before training")
        reader = library.reader()
        chart = ProgressBar(f"Training ({args.mode})")

        def progress(step: int, total: int, loss: float, accuracy: float | None) -> None:
            text = f"loss {loss:.3f}" + (f", held-out accuracy {100 * accuracy:.1f}%" if accuracy is not None else "")
            chart(Progress(step, total, text))

        try:
            outcome = train(reader, current, library.class_names(), models_dir=library.models_dir,
                            mode=args.mode, progress=progress, device=args.device)
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
            print(f"version {version.id} kept in the history but NOT made current "
                  f"(use `tagger models use {version.id}` to override)")
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


def _format_comparison(metrics: dict) -> str:
    new, old = metrics.get("new") or {}, metrics.get("current") or {}
    if new.get("accuracy") is None:
        return ""
    lines = [f"same held-out labels ({new.get('n', '?')}): new {100 * new['accuracy']:.1f}%"
             + (f" vs current {100 * old['accuracy']:.1f}%" if old.get("accuracy") is not None else "")]
    for name, stats in (new.get("per_class") or {}).items():
        precision, recall = stats.get("precision"), stats.get("recall")
        lines.append(f"  {name:<14} precision {_pct(precision)}  recall {_pct(recall)}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "  -   " if value is None else f"{100 * value:5.1f}%"


def cmd_models(args: argparse.Namespace) -> int:
    from tagger.runner import retag_from_cache

    with _open_library(args, readonly=args.action == "list") as library:
        if args.action == "use":
            version = library.promote(args.version)
            print(f"version {version.id} ({version.mode}) is current again")
            count = retag_from_cache(library)
            print(f"{count} photo(s) re-tagged from cached features"
                  + ("" if count else "; run `tagger tag --all` to re-tag from the photos"))
        for version in library.model_versions():
            accuracy = (version.metrics.get("new") or {}).get("accuracy")
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(version.created_at))
            print(f"{'*' if version.is_current else ' '} {version.id:>3}  {when}  {version.mode:<9} "
                  f"{version.n_labels:>5} labels  accuracy {_pct(accuracy)}  {', '.join(version.classes)}"
                  + (f"  ({version.note})" if version.note else ""))
    return EXIT_OK


# -- parser ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tagger",
        description="Tag photos as dog, elephant or other with a neural network that learns from you. "
        "Run without a command to open the app.",
    )
    parser.add_argument("--version", action="version", version=f"tagger {__version__}")
    parser.add_argument("--library", metavar="DIR", help="library folder (default: $TAGGER_LIBRARY or "
                        f"{default_library_dir()})")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("import", cmd_import, "add photos and folders (recursively) to the library")
    sub.add_argument("paths", nargs="+", metavar="PATH")
    sub.add_argument("-v", "--verbose", action="store_true", help="list every added file")

    sub = command("tag", cmd_tag, "tag the untagged photos with the current model")
    sub.add_argument("--all", action="store_true", help="re-tag every photo the model labeled too")
    sub.add_argument("--device", choices=["cpu", "cuda", "mps"], help="compute device (default: best available)")

    sub = command("label", cmd_label, "set your own label on photos (a correction the model learns from)")
    sub.add_argument("paths", nargs="+", metavar="PATH")
    sub.add_argument("--as", dest="label", metavar="CLASS")
    sub.add_argument("--clear", action="store_true", help="remove the label instead")

    sub = command("export", cmd_export, "write every photo's label as CSV, JSON or XMP sidecars")
    sub.add_argument("--format", choices=["csv", "json", "xmp"], default="csv")
    sub.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
    sub.add_argument("--with-date", action="store_true", help="csv: add a date column")
    sub.add_argument("--user-only", action="store_true", help="only the labels you set, not the model's")
    sub.add_argument("--embed", action="store_true",
                     help="xmp: ALSO write the keywords into the JPEG files themselves (changes your photos)")
    sub.add_argument("--dry-run", action="store_true", help="xmp: show what would change, write nothing")

    sub = command("export-model", cmd_export_model, "write the current model as ONNX and TorchScript with a JSON")
    sub.add_argument("-o", "--output", metavar="DIR", default="tagger-model")

    sub = command("import-labels", cmd_import_labels,
                  "take labels you already have as your own: a CSV (path,label) or a folder per class")
    source = sub.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", metavar="FILE")
    source.add_argument("--tree", metavar="DIR")
    sub.add_argument("--create-classes", action="store_true", help="add classes the library does not have yet")

    sub = command("sort", cmd_sort, "copy (or move) photos into one folder per label; never overwrites")
    sub.add_argument("destination", metavar="DEST")
    sub.add_argument("--move", action="store_true", help="move instead of copy (the library follows)")
    sub.add_argument("--unlabeled-folder", metavar="NAME", help="also sort unlabeled photos into NAME")
    sub.add_argument("--user-only", action="store_true", help="sort by your labels only")
    sub.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")

    sub = command("eval", cmd_eval, "score the current model on DIR (one sub-folder per class); adds nothing")
    sub.add_argument("folder", metavar="DIR")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--device", choices=["cpu", "cuda", "mps"])

    sub = command("status", cmd_status, "summarise the library")
    sub.add_argument("--json", action="store_true")

    sub = command("classes", cmd_classes, "list, add, rename or remove classes")
    actions = sub.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list the classes")
    add = actions.add_parser("add", help="add a class")
    add.add_argument("name")
    rename = actions.add_parser("rename", help="rename a class")
    rename.add_argument("name")
    rename.add_argument("new_name")
    remove = actions.add_parser("remove", help="remove a class (its photos become unlabeled)")
    remove.add_argument("name")
    sub.set_defaults(action="list")

    sub = command("train", cmd_train, "retrain the model on your labels and re-tag the rest")
    sub.add_argument("--mode", choices=["quick", "deep"], default="quick",
                     help="quick: the head on cached features (seconds); deep: also fine-tune the backbone")
    sub.add_argument("--device", choices=["cpu", "cuda", "mps"])
    decision = sub.add_mutually_exclusive_group()
    decision.add_argument("--promote", action="store_true", help="make the new model current even if it scores worse")
    decision.add_argument("--keep", action="store_true", help="keep the current model; only record the new one")

    sub = command("models", cmd_models, "list model versions, or go back to one")
    actions = sub.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="the history of model versions (* marks the current one)")
    use = actions.add_parser("use", help="make a version current again (roll back)")
    use.add_argument("version", type=int)
    sub.set_defaults(action="list")

    for register in _EXTRA_COMMANDS:
        register(command)
    return parser


def _explain_commands(command) -> None:
    # Registered from its own module so `explain`/`suspects` keep torch out of import time.
    from tagger.explain_cli import add_commands

    add_commands(command)


_EXTRA_COMMANDS: list[Callable] = [_explain_commands]


def _open_library(args: argparse.Namespace, *, readonly: bool | None = False) -> Library:
    """readonly=None: open for writing when free, else read-only (for commands that only read)."""
    root = Path(args.library).expanduser() if args.library else default_library_dir()
    if readonly:
        return Library(root, readonly=True)
    try:
        return Library(root)
    except (LibraryBusyError, OSError):
        # Another Tagger is writing, or the folder is read-only (a read-only share or mount):
        # a command that only reads can still run.
        if readonly is None and (root / "library.sqlite3").exists():
            return Library(root, readonly=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except BrokenPipeError:
        # The reader went away (`tagger export | head`): not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("\ntagger: interrupted; everything finished so far is saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CommandError, LibraryError, LibraryBusyError, StoreError, HeadError) as error:
        print(f"tagger: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:
        print(f"tagger: {_describe_os_error(error)}", file=sys.stderr)
        return EXIT_FAILURE
    except sqlite3.Error as error:
        print(f"tagger: {_describe_database_error(error, args)}", file=sys.stderr)
        return EXIT_FAILURE


def _describe_database_error(error: sqlite3.Error, args: argparse.Namespace) -> str:
    # SQLite reports a full disk in its own words ("database or disk is full"), not as OSError.
    import errno

    root = Path(args.library).expanduser() if args.library else default_library_dir()
    if is_disk_full(error, root):
        return _describe_os_error(OSError(errno.ENOSPC, "No space left on device", str(root)))
    return f"the library database failed: {error}; what was saved before is kept"


def _describe_os_error(error: OSError) -> str:
    import errno

    where = f" ({error.filename})" if error.filename else ""
    if error.errno == errno.ENOSPC:
        return f"the disk is full{where}; nothing was lost, free some space and run the command again"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{where}: the folder is read-only or not yours"
    return f"{error.strerror or error}{where}"
