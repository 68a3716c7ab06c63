"""`export`, `export-model`, `import-labels` and `sort`: tags going out of the app and coming in."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from tagger.cli.console import ProgressBar
from tagger.cli.support import EXIT_FAILURE, EXIT_OK, open_library
from tagger.errors import CommandError
from tagger.exchange.sidecar_names import DEFAULT_NAMING, SidecarNaming


def cmd_export(args: argparse.Namespace) -> int:
    from tagger.exchange import labels as exporting

    include_model = not args.user_only
    if args.format == "xmp":
        from tagger.exchange import xmp

        # A dry run only reads, so it also works beside another Tagger that has the library open.
        with open_library(args, readonly=None if args.dry_run else False) as library:
            plan = xmp.plan_xmp_changes(
                library,
                None,
                embed=args.embed,
                include_model_labels=include_model,
                naming=SidecarNaming(args.sidecar_names),
            )
            for change in plan:
                if change.action != "unchanged":
                    print(
                        f"{change.action}\t{change.target_path}\t{', '.join(change.tagger_keywords)}"
                        + (f"\t({change.problem})" if change.problem else "")
                    )
            if args.dry_run:
                print("dry run: nothing written")
                return EXIT_OK
            result = xmp.apply_xmp_changes(plan, keep_photo_mtime=not args.update_mtime)
        for path, reason in result.failed:
            print(f"failed\t{path}\t({reason})")
        print(result.describe())
        return EXIT_FAILURE if result.failed else EXIT_OK
    with open_library(args, readonly=None) as library:
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
        from tagger.common.user_files import export_text_writer

        with export_text_writer(Path(args.output)) as stream:
            writer(stream)
        print(f"{len(rows)} photo(s) exported to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_export_model(args: argparse.Namespace) -> int:
    from tagger.errors import ModelExportFailed
    from tagger.exchange.model_export_process import export_model_in_child_process

    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open_library(args, readonly=None) as library:
        # In a child process, as Export > Model in the app does: one way to export, and the
        # bundle's smoke test (packaging/build.sh) runs this to prove children start inside it.
        try:
            paths = export_model_in_child_process(library.root, out_dir)
        except ModelExportFailed as error:
            raise CommandError(f"the model was not exported: {error}") from error
    for path in paths:
        print(path)
    return EXIT_OK


def cmd_import_labels(args: argparse.Namespace) -> int:
    from tagger.common.spreadsheet_csv import guess_delimiter, read_csv_file
    from tagger.exchange import labels as exporting

    with open_library(args) as library:
        if args.csv:
            sheet = read_csv_file(args.csv)
            if sheet.guessed:
                print(f"note: {args.csv} is not UTF-8; read as {_ENCODING_NAMES[sheet.encoding]}", file=sys.stderr)
            summary = exporting.import_labels_csv(
                library,
                io.StringIO(sheet.text, newline=""),
                create_classes=args.create_classes,
                base_dir=Path(args.csv).resolve().parent,
                delimiter=guess_delimiter(sheet.text),
            )
        else:
            if not Path(args.tree).is_dir():
                raise CommandError(f"{args.tree} is not a folder")
            bar = ProgressBar("Importing")
            try:
                summary = exporting.import_label_tree(
                    library, args.tree, create_classes=args.create_classes, progress=bar
                )
            finally:
                bar.close()
    for where, why in summary.skipped[:_SKIPPED_SHOWN]:
        print(f"skipped\t{where}: {why}")
    if len(summary.skipped) > _SKIPPED_SHOWN:
        print(f"skipped\t... and {len(summary.skipped) - _SKIPPED_SHOWN} more")
    print(summary.describe())
    return EXIT_OK


_ENCODING_NAMES = {"cp1252": "Windows-1252", "latin-1": "Latin-1"}
# Re-importing a big export skips every row the model labeled: the first few say why.
_SKIPPED_SHOWN = 50


def cmd_sort(args: argparse.Namespace) -> int:
    from tagger.exchange.sorting import apply_sort, plan_sort

    with open_library(args, readonly=None if args.dry_run else False) as library:
        plan = plan_sort(
            library,
            Path(args.destination),
            None,
            "move" if args.move else "copy",
            unlabeled_folder=args.unlabeled_folder,
            include_model_labels=not args.user_only,
        )
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
    for source, reason in result.failed:
        print(f"failed\t{source}\t({reason})")
    print(result.describe())
    return EXIT_FAILURE if result.failed else EXIT_OK


def add_commands(command) -> None:  # noqa: ANN001 - the command line's registration hook
    """Register the exchange commands with the parser."""
    sub = command("export", cmd_export, "write every photo's label as CSV, JSON or XMP sidecars")
    sub.add_argument("--format", choices=["csv", "json", "xmp"], default="csv")
    sub.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
    sub.add_argument("--with-date", action="store_true", help="csv: add a date column")
    sub.add_argument("--user-only", action="store_true", help="only the labels you set, not the model's")
    sub.add_argument(
        "--embed",
        action="store_true",
        help="xmp: ALSO write the keywords into the JPEG files themselves (changes your photos)",
    )
    sub.add_argument(
        "--update-mtime",
        action="store_true",
        help="xmp --embed: give the JPEGs Tagger changes the current modification time "
        "(by default they keep theirs, as with exiftool -P)",
    )
    sub.add_argument("--dry-run", action="store_true", help="xmp: show what would change, write nothing")
    sub.add_argument(
        "--sidecar-names",
        choices=[naming.value for naming in SidecarNaming],
        default=DEFAULT_NAMING.value,
        help="xmp: how NEW sidecars are named: full = IMG_1.jpg.xmp (darktable, digiKam; the default), "
        "adobe = IMG_1.xmp (Lightroom; never beside a RAW file of the same name). "
        "Existing sidecars are updated whatever their name",
    )

    sub = command("export-model", cmd_export_model, "write the current model as ONNX and TorchScript with a JSON")
    sub.add_argument("-o", "--output", metavar="DIR", default="tagger-model")

    sub = command(
        "import-labels",
        cmd_import_labels,
        "take labels you already have as your own: a CSV (path,label) or a folder per class",
    )
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
