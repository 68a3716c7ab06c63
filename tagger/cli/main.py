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
from collections.abc import Callable, Sequence
from pathlib import Path

from tagger import __version__
from tagger.cli.console import ProgressBar
from tagger.cli.support import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    describe_database_error,
    describe_os_error,
    library_after_command,
    library_help,
    open_library,
)
from tagger.errors import (
    BackboneError,
    ClusterError,
    CommandError,
    HeadError,
    LibraryBusyError,
    LibraryError,
    StoreError,
)
from tagger.inference.networks import NETWORK_OPTIONS, NETWORKS, network_for_option, network_title

# -- commands -------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    from tagger.library.importer import import_paths

    missing = [p for p in args.paths if not Path(p).exists()]
    for path in missing:
        print(f"tagger: {path}: no such file or folder", file=sys.stderr)
    present = [p for p in args.paths if p not in missing]
    if not present:
        raise CommandError("nothing to import")
    with open_library(args) as library:
        bar = ProgressBar("Importing")
        try:
            summary = import_paths(library, present, progress=bar, follow_links=args.follow_links)
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
    for path, earlier in summary.near_duplicates:
        print(f"near-duplicate\t{path}\t(like {earlier})")
    # stdout lists files, one per line, for scripts; the summary is for the person.
    print(summary.describe(), file=sys.stderr)
    if summary.near_duplicates:
        # Two short lines: a narrow terminal shows them unbroken.
        print(f"{len(summary.near_duplicates)} near-duplicate(s) of photos already in the library", file=sys.stderr)
        print("(kept: listed with `tagger duplicates`)", file=sys.stderr)
    return EXIT_FAILURE if missing or _nothing_importable(summary) else EXIT_OK


def _nothing_importable(summary) -> bool:  # noqa: ANN001 - an ImportSummary
    """Every file given was unreadable or unsupported: a failure, not "0 added"."""
    return bool(summary.unreadable) and not (summary.added or summary.duplicates or summary.unchanged or summary.moved)


_LIBRARY_ONLY = "Files on disk are never deleted or changed: only the library forgets them."


def cmd_duplicates(args: argparse.Namespace) -> int:
    if not args.keep:
        with open_library(args, readonly=True) as library:
            groups = library.near_duplicate_groups()
        # stdout: one line per photo, "group number<TAB>path", earliest photo of each group first.
        for number, group in enumerate(groups, start=1):
            for photo in group:
                print(f"{number}\t{photo.path}")
        photos = sum(len(group) for group in groups)
        if groups:
            print(
                f"{len(groups)} group(s) of near-duplicates ({photos} photos); "
                "`tagger duplicates --keep PATH` keeps PATH and removes the others of its group "
                f"from the library. {_LIBRARY_ONLY}",
                file=sys.stderr,
            )
        else:
            print("no near-duplicates in the library", file=sys.stderr)
        return EXIT_OK
    with open_library(args) as library:
        keep = []
        kept_from: dict[int, str] = {}  # group's first photo id -> the PATH kept of it
        for path in args.keep:
            photo = library.photo_by_path(path)
            if photo is None:
                raise CommandError(f"{path} is not in the library")
            group = library.near_duplicate_group_of(photo.id)
            if not group:
                raise CommandError(f"{path} is not a near-duplicate of any photo in the library")
            if group[0].id in kept_from:
                raise CommandError(f"{kept_from[group[0].id]} and {path} are in the same group: keep one of them")
            kept_from[group[0].id] = path
            keep.append(photo)
        removed = []
        for photo in keep:
            removed += library.keep_near_duplicate(photo.id)
    for photo in removed:
        print(f"removed\t{photo.path}")
    print(f"{len(removed)} photo(s) removed from the library. {_LIBRARY_ONLY}", file=sys.stderr)
    return EXIT_OK


def cmd_tag(args: argparse.Namespace) -> int:
    network = network_for_option(args.backbone).name if args.backbone else None
    if args.cluster:
        from tagger.cli.cluster import cmd_tag_on_cluster

        return cmd_tag_on_cluster(args, network)
    if args.workers is not None:
        raise CommandError("--workers is for runs on a cluster: add --cluster")
    from tagger.tagging.runner import tag_library

    with open_library(args) as library:
        bar = ProgressBar("Tagging")
        try:
            outcome = tag_library(library, include_tagged=args.all, device=args.device, progress=bar, network=network)
        finally:
            bar.close()
    print(outcome.describe())
    return EXIT_OK


def cmd_label(args: argparse.Namespace) -> int:
    label = None if args.clear else args.label
    if label is None and not args.clear:
        raise CommandError("say which class with --as CLASS, or --clear")
    with open_library(args) as library:
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
    with open_library(args, readonly=True) as library:
        status = library.status()
        versions = library.model_versions()
    if args.json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    print(f"Library: {status['library']}")
    print(f"Photos: {status['photos']} ({status['unreadable']} unreadable, {status['missing']} missing)")
    print(
        f"Labeled by you: {status['user_labeled']}   by the model: {status['model_labeled']}   "
        f"unlabeled: {status['unlabeled']}"
    )
    for name, counts in status["classes"].items():
        print(f"  {name:<16} {counts['user']:>7} yours  {counts['model']:>7} model")
    current = next((v for v in versions if v.is_current), None)
    if current:
        print(
            f"Model: version {current.id} ({current.mode}, {network_title(current.backbone_id)}, "
            f"{len(versions)} version(s) in history)"
        )
    else:
        print("Model: zero-shot (not used yet)")
    return EXIT_OK


def cmd_prepare(args: argparse.Namespace) -> int:
    from tagger.errors import ExportFailed
    from tagger.inference.choice import default_network
    from tagger.inference.machine_cache import prepare_stock_export

    network = network_for_option(args.backbone) if args.backbone else NETWORKS[default_network(None)]
    try:
        folder, made = prepare_stock_export(network.name, Path(args.into) if args.into else None)
    except ExportFailed as error:
        raise CommandError(str(error)) from None
    print(f"{'made' if made else 'already made'}: the model's CPU export ({network.title}) in {folder}")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from tagger.tagging.folder_eval import evaluate_folder

    folder = Path(args.folder)
    if not folder.is_dir():
        raise CommandError(f"{folder} is not a folder (expected one sub-folder per class)")
    with open_library(args, readonly=None) as library:
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
    with open_library(args, readonly=action == "list") as library:
        if action == "add":
            library.add_class(args.name)
            print(f"added class {args.name!r}")
        elif action == "rename":
            library.rename_class(args.name, args.new_name)
            print(f"renamed {args.name!r} to {args.new_name!r}")
        elif action == "remove":
            cleared = library.remove_class(args.name)
            print(f"removed class {args.name!r}; {cleared} photo(s) are unlabeled now")
        counts = library.class_counts()
        for position, info in enumerate(library.classes(), start=1):
            c = counts.get(info.name, {"user": 0, "model": 0})
            print(f"{position}. {info.name:<16} {c['user']:>6} yours {c['model']:>7} model")
    return EXIT_OK


# -- parser ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tagger",
        description="Tag photos as dog, elephant or other with a neural network that learns from you. "
        "Run without a command to open the app.",
    )
    parser.add_argument("--version", action="version", version=f"tagger {__version__}")
    parser.add_argument("--library", metavar="DIR", help=library_help())
    library_after = library_after_command()
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[library_after])
        sub.set_defaults(handler=handler)
        return sub

    sub = command("import", cmd_import, "add photos and folders (recursively) to the library")
    sub.add_argument("paths", nargs="+", metavar="PATH")
    sub.add_argument("-v", "--verbose", action="store_true", help="list every added file")
    sub.add_argument(
        "--follow-links",
        action="store_true",
        help="also follow links that lead out of the folders given (not followed by default)",
    )

    sub = command(
        "duplicates",
        cmd_duplicates,
        "list the groups of near-duplicates (resized or re-encoded copies found at import), "
        "or keep one photo of a group and remove the others from the library. "
        "Files on disk are never deleted or changed: only the library forgets them",
    )
    sub.add_argument(
        "--keep",
        nargs="+",
        metavar="PATH",
        help="keep this photo and remove the other photos of its group from the library (not from disk)",
    )

    sub = command("tag", cmd_tag, "tag the untagged photos with the current model")
    sub.add_argument("--all", action="store_true", help="re-tag every photo the model labeled too")
    sub.add_argument("--device", choices=["cpu", "cuda", "mps"], help="compute device (default: best available)")
    sub.add_argument(
        "--backbone",
        choices=NETWORK_OPTIONS,
        help="the network that tags (default: the library's own; a new library's is lite1 where a GPU may "
        "tag, lite0 on the CPU). Another one than the library's switches it: every photo is tagged "
        "again and the model starts over from the network's ImageNet classes; your labels and the "
        "model history are kept, and `tagger train` learns from your labels again",
    )
    sub.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="decode and tag on a Ray cluster (pip install 'tagger[cluster]'): 'auto' (the cluster this "
        "machine belongs to, else a Ray of its own for the run), 'local', or the head node's HOST:PORT. "
        "The photos must be on storage every worker sees at the same path",
    )
    sub.add_argument(
        "--workers", type=int, metavar="N", help="with --cluster: model actors (default: one per GPU, else per CPU)"
    )

    sub = command("label", cmd_label, "set your own label on photos (a correction the model learns from)")
    sub.add_argument("paths", nargs="+", metavar="PATH")
    sub.add_argument("--as", dest="label", metavar="CLASS")
    sub.add_argument("--clear", action="store_true", help="remove the label instead")

    sub = command("eval", cmd_eval, "score the current model on DIR (one sub-folder per class); adds nothing")
    sub.add_argument("folder", metavar="DIR")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--device", choices=["cpu", "cuda", "mps"])

    sub = command("status", cmd_status, "summarise the library")
    sub.add_argument("--json", action="store_true")

    sub = command(
        "prepare",
        cmd_prepare,
        "make the model's CPU export now (install time), so every "
        "library's first tag starts at once; shared by all libraries of this machine",
    )
    sub.add_argument(
        "--into", metavar="DIR", help="where (default: the machine's cache folder); a bundle ships it inside itself"
    )
    sub.add_argument(
        "--backbone", choices=NETWORK_OPTIONS, help="the network (default: the one a new library starts with here)"
    )

    sub = command("classes", cmd_classes, "list, add, rename or remove classes")
    actions = sub.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list the classes", parents=[library_after])
    add = actions.add_parser("add", help="add a class", parents=[library_after])
    add.add_argument("name")
    rename = actions.add_parser("rename", help="rename a class", parents=[library_after])
    rename.add_argument("name")
    rename.add_argument("new_name")
    remove = actions.add_parser("remove", help="remove a class (its photos become unlabeled)", parents=[library_after])
    remove.add_argument("name")
    sub.set_defaults(action="list")

    for register in _extra_commands():
        register(command)
    return parser


def _extra_commands() -> list[Callable]:
    # Groups of commands live beside what they drive, each in its own module.
    from tagger.cli import exchange, explain, training

    return [exchange.add_commands, training.add_commands, explain.add_commands]


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
    except (CommandError, LibraryError, LibraryBusyError, StoreError, HeadError, BackboneError, ClusterError) as error:
        print(f"tagger: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:
        print(f"tagger: {describe_os_error(error)}", file=sys.stderr)
        return EXIT_FAILURE
    except sqlite3.Error as error:
        print(f"tagger: {describe_database_error(error, args)}", file=sys.stderr)
        return EXIT_FAILURE
