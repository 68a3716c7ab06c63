"""Photos are never modified unless the user explicitly asks (`export --format xmp --embed`).

A whole session through the real CLI (import, tag, label, add a class, train, re-tag,
evaluate, list suspects, explain a tag, export CSV/JSON/XMP sidecars, sort by copying) over a
folder of real and generated photos in many formats; before and after, the sha256, size,
mtime and mode of every file are compared. XMP sidecars may appear next to the photos (that
is what `export --format xmp` is for); nothing else may appear, change or go."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers.reliability import (
    TemplateLibrary,
    assert_success,
    cli_has_command,
    copy_sample_photos,
    generate_photos,
    inspect_library,
    link_tree,
    run_argv,
    run_cli,
    snapshot_files,
    train_argv,
)

AWKWARD = Path(__file__).parent / "data" / "awkward"


def photo_folder(folder: Path) -> dict[Path, str]:
    """Real photos by class, generated ones, the awkward formats, a PNG and a WebP: path -> class."""
    labels = copy_sample_photos(folder / "samples")
    for index, path in enumerate(generate_photos(folder / "generated", 12, seed=51)):
        labels[path] = ("dog", "elephant", "other")[index % 3]
    Image.new("RGB", (40, 30), (10, 200, 30)).save(folder / "generated" / "green.png")
    Image.new("RGB", (40, 30), (200, 10, 30)).save(folder / "generated" / "red.webp")
    if AWKWARD.is_dir():
        shutil.copytree(AWKWARD, folder / "awkward", ignore=shutil.ignore_patterns("*.md"))
    return labels


@pytest.mark.slow
def test_a_whole_session_never_changes_a_photo(template: TemplateLibrary, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    labels = photo_folder(photos)
    root = tmp_path / "library"
    link_tree(template.root / "cache", root / "cache")  # skips the 10-20 s ONNX export
    before = snapshot_files(photos)

    assert_success(run_cli(root, "import", photos))
    assert_success(run_cli(root, "tag"))
    for label in ("dog", "elephant", "other"):
        assert_success(run_cli(root, "label", *(p for p, given in labels.items() if given == label), "--as", label))
    assert_success(run_cli(root, "classes", "add", "cow"))
    assert_success(run_argv(train_argv(root)))
    assert_success(run_cli(root, "tag", "--all"))
    if (photos / "samples").is_dir():
        assert_success(run_cli(root, "eval", photos / "samples"))
    for export_format in ("csv", "json"):
        assert_success(run_cli(root, "export", "--format", export_format, "-o", tmp_path / f"labels.{export_format}"))
    assert_success(run_cli(root, "export", "--format", "xmp"))
    assert_success(run_cli(root, "sort", tmp_path / "sorted"))
    if cli_has_command("suspects"):
        assert_success(run_cli(root, "suspects"))
    if cli_has_command("explain"):
        photo = next(p for p, label in labels.items() if label == "dog")
        assert_success(run_cli(root, "explain", photo, "-o", tmp_path / "explained.png"))

    after = snapshot_files(photos)
    changed = sorted(path for path in before if after.get(path) != before[path])
    assert changed == [], "photos were modified or removed"
    added = sorted(set(after) - set(before))
    assert added, "no XMP sidecar was written: the test no longer covers that export"
    for path in added:
        stem = Path(path).with_suffix("")
        assert path.endswith(".xmp") and any(str(photo).startswith(str(stem)) for photo in map(Path, before)), (
            f"unexpected new file {path}"
        )
    assert inspect_library(root, {str(p.resolve()): label for p, label in labels.items()}).ok
