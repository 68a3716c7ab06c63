"""Machine-wide caches: one export of the stock backbone serves every library, made at
install time, so a new library's first tag starts at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import platformdirs
import pytest

from tagger.cli.main import main
from tagger.inference import machine_cache
from tagger.inference.onnx_engine import onnx_cache_paths
from tagger.inference.preprocessing import DEFAULT_BACKBONE, default_backbone_id
from tagger.library.library import Library
from tests.helpers.builders import write_image


def export_files(folder: Path) -> list[Path]:
    return [path for path in onnx_cache_paths(folder, default_backbone_id()) if path.is_file()]


def seed(folder: Path, onnx_cache: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file in onnx_cache.iterdir():
        shutil.copy2(file, folder / file.name)
    return folder


@pytest.fixture
def fresh_machine(tmp_path, monkeypatch) -> Path:
    """A machine whose cache folder is empty (Tagger just installed, nothing prepared)."""
    folder = tmp_path / "machine-cache"
    monkeypatch.setenv(machine_cache.CACHE_ENV, str(folder))
    monkeypatch.setattr(machine_cache, "SHIPPED_BACKBONES_DIR", tmp_path / "no-bundle")
    return folder


def test_the_cache_folder_is_the_platforms_unless_told(monkeypatch, tmp_path):
    monkeypatch.delenv(machine_cache.CACHE_ENV)
    assert machine_cache.machine_cache_dir() == Path(platformdirs.user_cache_dir("Tagger", appauthor=False))
    assert machine_cache.thumbnails_dir().parent == machine_cache.shared_backbones_dir().parent
    monkeypatch.setenv(machine_cache.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert machine_cache.shared_backbones_dir() == tmp_path / "elsewhere" / "backbones"


def test_where_the_export_is_looked_for(fresh_machine, tmp_path, onnx_cache, monkeypatch):
    library_cache = tmp_path / "library" / "cache"
    library_cache.mkdir(parents=True)
    shared = machine_cache.shared_backbones_dir()
    assert machine_cache.stock_export_dir(library_cache, default_backbone_id()) == shared  # where it will be made

    bundle = seed(tmp_path / "bundle", onnx_cache)
    monkeypatch.setattr(machine_cache, "SHIPPED_BACKBONES_DIR", bundle)
    assert machine_cache.stock_export_dir(library_cache, default_backbone_id()) == bundle  # shipped: nothing to make

    seed(library_cache, onnx_cache)  # a library from before exports were shared keeps its own
    assert machine_cache.stock_export_dir(library_cache, default_backbone_id()) == library_cache


@pytest.mark.slow
def test_prepare_makes_the_export_once_and_every_new_library_tags_from_it(fresh_machine, tmp_path, capsys):
    # What `tagger tag --device cpu` runs below; a plain `prepare` makes the machine's default network's.
    assert main(["prepare", "--backbone", "lite0"]) == 0
    made_text = "made: the model's CPU export (EfficientNet-Lite0) in " + str(fresh_machine / "backbones")
    assert made_text in capsys.readouterr().out
    made = {path: path.stat().st_mtime_ns for path in export_files(fresh_machine / "backbones")}
    assert len(made) == 2
    assert main(["prepare", "--backbone", "lite0"]) == 0
    assert capsys.readouterr().out.startswith("already made")

    for name in ("first", "second"):
        library = tmp_path / name
        assert main(["--library", str(library), "import", str(write_image(tmp_path / f"{name}.jpg"))]) == 0
        assert main(["--library", str(library), "tag", "--device", "cpu"]) == 0
        assert "1 photo(s) tagged" in capsys.readouterr().out
        assert not export_files(library / "cache")  # no 18 MB copy per library
    assert {path: path.stat().st_mtime_ns for path in export_files(fresh_machine / "backbones")} == made


def test_without_a_prepared_export_the_first_tag_makes_it_for_the_machine(
    fresh_machine, tmp_path, onnx_cache, monkeypatch, capsys
):
    import tagger.inference.choice

    made_in: list[Path] = []

    def export_from_the_session_cache(cache_dir, backbone=DEFAULT_BACKBONE):  # noqa: ANN001, ANN202
        made_in.append(Path(cache_dir))  # stands in for the seconds-long export
        seed(Path(cache_dir), onnx_cache)
        return onnx_cache_paths(cache_dir, default_backbone_id())

    monkeypatch.setattr(tagger.inference.choice, "export_onnx", export_from_the_session_cache)
    for name in ("first", "second"):
        library = tmp_path / name
        main(["--library", str(library), "import", str(write_image(tmp_path / f"{name}.jpg"))])
        assert main(["--library", str(library), "tag", "--device", "cpu"]) == 0
        assert not export_files(library / "cache")
    assert made_in == [fresh_machine / "backbones"]  # once, for both libraries


def test_the_thumbnails_older_versions_kept_in_each_library_are_removed(tmp_path):
    root = tmp_path / "library"
    Library(root).close()
    old = root / "thumbnails" / "ab"
    old.mkdir(parents=True)
    (old / "ab12-256.jpg").write_bytes(b"a thumbnail")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.jpg").write_bytes(b"not Tagger's")
    (old / "link").symlink_to(outside, target_is_directory=True)
    Library(root).close()
    assert not (root / "thumbnails").exists()
    assert (outside / "keep.jpg").read_bytes() == b"not Tagger's"  # a link inside is not followed

    (root / "thumbnails").symlink_to(outside, target_is_directory=True)  # a link there stays
    Library(root).close()
    assert (root / "thumbnails").is_symlink() and (outside / "keep.jpg").exists()
