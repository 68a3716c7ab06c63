"""Labels out of the library as CSV or JSON, and existing labels into it.

Export: one row per photo (unlabeled photos too, with an empty label). The CSV has exactly
the columns in `CSV_COLUMNS` unless `include_date=True` appends `date`; JSON always
carries every field, `date` included, as an array of objects (null where there is no value).
Dates are when the current label was set, ISO 8601 in UTC.

Import, always as the user's own labels:
- `import_labels_csv`: rows of path,label (a header row is optional; Tagger's own export
  is accepted too, and its rows whose source is "model" are skipped, so that re-importing
  an export never turns the model's guesses into the user's word).
- `import_label_tree`: a collection already sorted into one folder per class
  (root/dog/..., root/cow/...): imports the photos, then labels each with the name of
  the top-level folder it sits under. Files directly in root are ignored.
Both match class names ignoring case ("Dog" is the class "dog") and create missing classes
only when `create_classes=True`; otherwise those rows are reported under `unknown_class`.
A name that starts like a spreadsheet formula ("=...", "+...", "-...", "@...") never becomes
a class this way: the row is skipped, saying so.

Spreadsheets open these files, so every CSV cell that one would run as a formula is written
escaped, and read back unescaped (see spreadsheet_csv.py); a line the csv module cannot
read is skipped with its number.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from tagger.common.paths import normalise_path
from tagger.common.spreadsheet_csv import csv_rows, looks_like_formula, spreadsheet_safe, without_spreadsheet_escape
from tagger.domain import ImportSummary, LabelSource, Photo, Progress
from tagger.errors import LibraryError
from tagger.library.library import Library

CSV_COLUMNS = ("path", "label", "source", "confidence", "model_version")
DATE_COLUMN = "date"


@dataclass(frozen=True)
class ExportRow:
    path: str
    label: str | None
    source: str | None  # "user" or "model"
    confidence: float | None
    model_version: int | None
    date: str | None  # when the label was set, ISO 8601 UTC


def export_rows(library: Library, photo_ids: Sequence[int] | None = None) -> list[ExportRow]:
    """One row per photo (all of them when `photo_ids` is None), in library order."""
    return [_row(photo) for photo in library.photos(photo_ids)]


def _row(photo: Photo) -> ExportRow:
    labeled = photo.label is not None
    return ExportRow(
        path=photo.path,
        label=photo.label,
        source=photo.label_source.value if labeled and photo.label_source else None,
        confidence=photo.confidence if labeled else None,
        model_version=photo.model_version_id if labeled else None,
        date=_iso_utc(photo.labeled_at) if labeled and photo.labeled_at else None,
    )


def _iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_csv(rows: Iterable[ExportRow], stream: IO[str], *, include_date: bool = False) -> int:
    """Write the header and one line per row; returns the number of rows.

    Open files with newline="" (the csv module's rule); lines end in "\\n"."""
    columns = CSV_COLUMNS + ((DATE_COLUMN,) if include_date else ())
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        values = asdict(row)
        values["confidence"] = "" if row.confidence is None else f"{row.confidence:.4f}"
        cells = ("" if values[column] is None else str(values[column]) for column in columns)
        writer.writerow([spreadsheet_safe(cell) for cell in cells])
        count += 1
    return count


def write_json(rows: Iterable[ExportRow], stream: IO[str]) -> int:
    """Write an array of objects with every field; returns the number of rows."""
    records = [asdict(row) for row in rows]
    json.dump(records, stream, ensure_ascii=False, indent=1)
    stream.write("\n")
    return len(records)


# -- importing ----------------------------------------------------------------------------


@dataclass
class LabelImportSummary:
    labeled: list[str] = field(default_factory=list)  # paths given a new user label
    unchanged: list[str] = field(default_factory=list)  # already had that user label
    unknown_class: dict[str, list[str]] = field(default_factory=dict)  # class -> paths
    not_found: list[str] = field(default_factory=list)  # paths not in the library
    created_classes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    photo_import: ImportSummary | None = None  # set by the folder-tree import

    def describe(self) -> str:
        parts = [f"{len(self.labeled)} labeled"]
        if self.unchanged:
            parts.append(f"{len(self.unchanged)} already had that label")
        unknown = sum(len(paths) for paths in self.unknown_class.values())
        if unknown:
            names = ", ".join(sorted(self.unknown_class))
            parts.append(f"{unknown} with an unknown class ({names}; allow creating classes to add them)")
        if self.not_found:
            parts.append(f"{len(self.not_found)} not found in the library")
        if self.created_classes:
            parts.append(f"new classes: {', '.join(self.created_classes)}")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        text = ", ".join(parts)
        if self.photo_import is not None:
            text = f"photos: {self.photo_import.describe()}; labels: {text}"
        return text


class _ClassResolver:
    """Class names as the library spells them, creating them when the caller allowed it."""

    def __init__(self, library: Library, summary: LabelImportSummary, *, create: bool) -> None:
        self._library = library
        self._summary = summary
        self._create = create
        self._known = {_class_key(name): name for name in library.class_names()}

    def resolve(self, text: str, where: str) -> str | None:
        key = _class_key(text)
        if key in self._known:
            return self._known[key]
        name = " ".join(text.split())
        if looks_like_formula(name):
            # From someone else's file, it would be run by the spreadsheet of whoever opens a
            # later export; a class the user made by hand is matched above all the same.
            self._summary.skipped.append(
                (
                    where,
                    f"the label {name!r} looks like a spreadsheet formula; "
                    "Tagger makes no class of it (add it yourself if you mean it)",
                )
            )
            return None
        if not self._create:
            self._summary.unknown_class.setdefault(name, []).append(where)
            return None
        try:
            created = self._library.add_class(name).name
        except LibraryError as error:
            self._summary.skipped.append((where, str(error)))
            return None
        self._known[_class_key(created)] = created
        self._summary.created_classes.append(created)
        return created


def _class_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def import_labels_csv(
    library: Library,
    stream: IO[str],
    *,
    create_classes: bool = False,
    base_dir: str | os.PathLike | None = None,
    delimiter: str = ",",
) -> LabelImportSummary:
    """Label photos already in the library from CSV rows of path,label, as the user's labels.

    Relative paths are taken relative to `base_dir` (default: the current folder). When a
    path appears twice, its last row wins. Open files with newline="" (the csv module's rule);
    `spreadsheet_csv.read_csv_file` decodes a file whatever its encoding."""
    summary = LabelImportSummary()
    resolver = _ClassResolver(library, summary, create=create_classes)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    wanted: dict[int, tuple[str, str]] = {}  # photo id -> (path as written, class)
    for line_number, path_text, label_text, source in _csv_records(stream, summary, delimiter):
        where = f"line {line_number}: {path_text}"
        if source == LabelSource.MODEL.value:
            summary.skipped.append((where, "the model's label, not the user's"))
            continue
        if not label_text.strip():
            summary.skipped.append((where, "no label"))
            continue
        try:
            photo = library.photo_by_path(base / path_text)
        except ValueError:  # NUL in the path: no file can have that name
            photo = None
        if photo is None:
            summary.not_found.append(path_text)
            continue
        label = resolver.resolve(label_text, path_text)
        if label is not None:
            wanted[photo.id] = (path_text, label)
    _apply_labels(library, wanted, summary)
    return summary


def _csv_records(stream: IO[str], summary: LabelImportSummary, delimiter: str) -> Iterable[tuple[int, str, str, str]]:
    """(line number, path, label, source) per data row; source is "" when there is none."""
    path_column, label_column, source_column = 0, 1, None
    first = True
    for line in csv_rows(stream, delimiter):
        if line.problem:
            summary.skipped.append((f"line {line.number}", line.problem))
            continue
        row = [without_spreadsheet_escape(cell) for cell in line.cells]
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if first:
            first = False
            header = [cell.lstrip("\ufeff").casefold() for cell in cells]
            if "path" in header and "label" in header:
                path_column, label_column = header.index("path"), header.index("label")
                source_column = header.index("source") if "source" in header else None
                continue
        if len(cells) <= max(path_column, label_column) or not cells[path_column]:
            summary.skipped.append((f"line {line.number}", "needs a path and a label"))
            continue
        has_source = source_column is not None and source_column < len(cells)
        source = cells[source_column].casefold() if has_source else ""
        # The path as written: a file name may really begin or end with a space.
        yield line.number, row[path_column], cells[label_column], source


def _apply_labels(library: Library, wanted: dict[int, tuple[str, str]], summary: LabelImportSummary) -> None:
    by_label: dict[str, list[int]] = {}
    current = {photo.id: photo for photo in library.photos(list(wanted))}
    for photo_id, (where, label) in wanted.items():
        photo = current[photo_id]
        if photo.label == label and photo.is_user_labeled:
            summary.unchanged.append(where)
            continue
        by_label.setdefault(label, []).append(photo_id)
        summary.labeled.append(where)
    for label, photo_ids in by_label.items():
        library.set_user_labels(photo_ids, label)


@dataclass
class ClassFolders:
    """The top-level folders of a sorted collection that name classes: what to import, as what."""

    folders: dict[str, str]  # normalised folder path -> class name
    summary: LabelImportSummary


def find_class_folders(library: Library, root: str | os.PathLike, *, create_classes: bool = False) -> ClassFolders:
    """Step 1 of a folder-tree import: match root's sub-folders to classes (creating them
    when allowed). Hidden folders and files directly in root are ignored."""
    summary = LabelImportSummary()
    resolver = _ClassResolver(library, summary, create=create_classes)
    folders: dict[str, str] = {}
    for entry in sorted(os.scandir(root), key=lambda entry: entry.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        label = resolver.resolve(entry.name, entry.path)
        if label is not None:
            folders[normalise_path(entry.path)] = label
    return ClassFolders(folders, summary)


def label_class_folders(library: Library, found: ClassFolders, photo_import: ImportSummary) -> LabelImportSummary:
    """Step 3, after the folders were imported (step 2, by the importer): label every photo
    under each folder with its class. Duplicates the importer skipped label the photo
    already in the library instead."""
    summary = found.summary
    summary.photo_import = photo_import
    wanted: dict[int, tuple[str, str]] = {}
    for folder, label in found.folders.items():
        for photo in library.store.photos_under(folder):
            if photo.missing:
                continue
            if not photo.readable:
                summary.skipped.append((photo.path, "unreadable"))
                continue
            wanted[photo.id] = (photo.path, label)
    for duplicate_path, existing_path in photo_import.duplicates:
        label = _label_of_folder(found.folders, duplicate_path)
        existing = library.photo_by_path(existing_path)
        if label is not None and existing is not None and existing.id not in wanted:
            wanted[existing.id] = (existing.path, label)
    _apply_labels(library, wanted, summary)
    return summary


def import_label_tree(
    library: Library,
    root: str | os.PathLike,
    *,
    create_classes: bool = False,
    progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> LabelImportSummary:
    """Bootstrap from a sorted collection: import root/<class>/** and label by folder name.

    Folders whose name is not a class (and `create_classes` is False) are neither imported
    nor labeled; they are listed under `unknown_class`. The three steps are also public so
    that the GUI can run the import itself in its worker."""
    from tagger.library.importer import import_paths

    found = find_class_folders(library, root, create_classes=create_classes)
    photo_import = import_paths(library, list(found.folders), progress=progress, should_cancel=should_cancel)
    return label_class_folders(library, found, photo_import)


def _label_of_folder(folders: dict[str, str], path: str) -> str | None:
    for folder, label in folders.items():
        if path.startswith(folder.rstrip(os.sep) + os.sep):
            return label
    return None


__all__ = [
    "CSV_COLUMNS",
    "ClassFolders",
    "find_class_folders",
    "label_class_folders",
    "ExportRow",
    "LabelImportSummary",
    "export_rows",
    "import_label_tree",
    "import_labels_csv",
    "write_csv",
    "write_json",
]
