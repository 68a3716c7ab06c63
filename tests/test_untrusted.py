"""Model files and libraries from someone else are data, never code.

* A pickle (or a PyTorch zip, which holds one) named like a checkpoint is refused before
  anything unpickles it: its payload would create a marker file, which must never appear.
* A safetensors file whose header lies (absurd sizes, offsets past the end, shapes that do
  not fit together) is a clear HeadError, quickly, without trying to allocate what it claims.
* A library database with crafted rows (class names with `/` or `..`, photo paths with
  `../`, model files outside the library) cannot make sorting or exporting write outside
  the folder the user chose.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import sqlite3
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tagger.classifier.head import Head
from tagger.errors import HeadError
from tagger.inference.preprocessing import Preprocessing
from tagger.library.library import Library
from tagger.tagging.runner import tag_library
from tests.helpers.builders import library_with_photos
from tests.helpers.reliability import (
    TemplateLibrary,
    assert_clean_failure,
    assert_success,
    cli_has_command,
    clone_library,
    generate_photos,
    real_path,
    run_argv,
    run_cli,
    snapshot_files,
    train_argv,
)

# -- payloads -------------------------------------------------------------------------------


class _CreatesMarker:
    """Unpickling this calls open(marker, "w"): the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Callable, tuple[str, str]]:
        return (open, (self.marker, "w"))


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps(_CreatesMarker(marker), protocol=2)


def torch_zip_payload(marker: Path) -> bytes:
    """What torch.save writes (a zip holding data.pkl), carrying the same payload."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_payload(marker))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


PAYLOADS = {"pickle": pickle_payload, "torch-zip": torch_zip_payload}


def replace_file(path: Path, data: bytes) -> None:
    # A new inode, so that no hard link elsewhere (a template's files) sees the change.
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def current_head_file(root: Path) -> Path:
    with Library(root, readonly=True) as library:
        return library.model_file(library.current_model_version().head_file)


# -- malicious checkpoints ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_a_pickle_named_like_a_head_is_refused_unexecuted(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "head-20250101-000000-abcdef.safetensors"
    path.write_bytes(PAYLOADS[kind](marker))
    with pytest.raises(HeadError, match="safetensors"):
        Head.load(path)
    assert not marker.exists()


def test_a_real_head_is_never_mistaken_for_a_pickle() -> None:
    """A safetensors file starts with its header's length: when that length's low byte is
    0x80, its first byte is a pickle's. (Found by bench/kill_survival.py: a trained head that
    then would not load.)"""
    head = Head.from_bytes(small_head_file())
    for padding in range(64):
        head.info = {"padding": "x" * padding}
        raw = head.to_bytes()
        if raw[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a header length with 0x80 as its low byte")
    assert Head.from_bytes(raw).info == head.info


def test_the_payload_really_runs_when_unpickled(tmp_path: Path) -> None:
    """Guards the test above: a payload that did nothing would prove nothing."""
    marker = tmp_path / "code-ran"
    pickle.loads(pickle_payload(marker))
    assert marker.exists()


@pytest.mark.slow
def test_commands_refuse_a_pickled_current_model(template: TemplateLibrary, tmp_path: Path) -> None:
    root = clone_library(template, tmp_path / "library")
    marker = tmp_path / "code-ran"
    replace_file(current_head_file(root), pickle_payload(marker))

    assert_clean_failure(run_cli(root, "eval", template.photos / "samples"), "safetensors")
    assert_clean_failure(run_argv(train_argv(root)), "safetensors")
    if cli_has_command("explain"):
        photo = next(iter(template.user_labels))
        assert_clean_failure(run_cli(root, "explain", photo, "-o", tmp_path / "explained.png"), "safetensors")
    if cli_has_command("suspects"):
        result = run_cli(root, "suspects")
        assert "Traceback" not in result.stderr, result.stderr
    # The template's model is zero-shot (nothing learned): tagging makes it again instead.
    tagged = run_cli(root, "tag", "--all")
    assert_success(tagged)
    assert "zero-shot model made again" in tagged.stdout and "safetensors" in tagged.stdout
    assert not marker.exists()
    # Refusing the model did not cost the user anything else.
    assert_success(run_cli(root, "status"))


def test_a_pickled_onnx_cache_is_ignored(template: TemplateLibrary, tmp_path: Path) -> None:
    from tagger.inference.onnx_engine import OnnxEngine, onnx_cache_paths
    from tagger.inference.preprocessing import default_backbone_id

    marker = tmp_path / "code-ran"
    onnx_file, sidecar = onnx_cache_paths(tmp_path, default_backbone_id())
    onnx_file.write_bytes(pickle_payload(marker))
    sidecar.write_bytes(pickle_payload(marker))
    assert OnnxEngine.from_cache(tmp_path, default_backbone_id()) is None
    assert not marker.exists()


@pytest.mark.slow
def test_a_pickled_backbone_checkpoint_is_refused_unexecuted(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tagger.inference.tuned_backbone import load_finetuned_backbone

    marker = tmp_path / "code-ran"
    for kind, payload in PAYLOADS.items():
        path = tmp_path / f"backbone-{kind}.safetensors"
        path.write_bytes(payload(marker))
        with pytest.raises(Exception) as refused:
            load_finetuned_backbone(path)
        assert "safetensors" in str(refused.value), refused.value
        assert not marker.exists()


# -- lying safetensors headers ---------------------------------------------------------------


def safetensors_bytes(header: dict, data: bytes = b"", *, declared_length: int | None = None) -> bytes:
    encoded = json.dumps(header).encode()
    length = len(encoded) if declared_length is None else declared_length
    return struct.pack("<Q", length) + encoded + data


def f32(shape: list[int], start: int) -> dict:
    return {"dtype": "F32", "shape": shape, "data_offsets": [start, start + 4 * int(np.prod(shape))]}


def head_description(**changes: object) -> str:
    description = {
        "classes": ["dog", "elephant", "other"],
        "groups": {"dog": [1]},
        "temperature": 1.0,
        "size_correction": 0.75,
        "backbone_id": "test",
        "info": {},
    }
    description.update(changes)
    return json.dumps({key: value for key, value in description.items() if value is not ...})


def small_head_file(
    *,
    description: str | None = None,
    shapes: dict[str, list[int]] | None = None,
    metadata: dict | None = None,
    first_values: dict[str, float] | None = None,
) -> bytes:
    """A well-formed safetensors head of 10 ImageNet classes and 8 features, then bent as asked
    (`first_values` sets the first number of the tensors it names; all others are 0)."""
    wanted = {
        "imagenet_weight": [10, 8],
        "imagenet_bias": [10],
        "residual_weight": [3, 8],
        "residual_bias": [3],
        "class_bias": [3],
    }
    wanted.update(shapes or {})
    header: dict = {
        "__metadata__": {
            "format": "tagger.head",
            "version": "1",
            "head": description or head_description(),
            **(metadata or {}),
        }
    }
    offset = 0
    for name, shape in wanted.items():
        header[name] = f32(shape, offset)
        offset = header[name]["data_offsets"][1]
    header["__metadata__"] = {k: v for k, v in header["__metadata__"].items() if v is not None}
    data = bytearray(offset)
    for name, value in (first_values or {}).items():
        struct.pack_into("<f", data, header[name]["data_offsets"][0], value)
    return safetensors_bytes(header, bytes(data))


def test_the_well_formed_small_head_loads() -> None:
    """Guards the cases below: each bends one thing of a file that otherwise loads."""
    assert Head.from_bytes(small_head_file()).classes == ["dog", "elephant", "other"]


LYING_FILES: dict[str, Callable[[], bytes]] = {
    "empty file": lambda: b"",
    "header length 2**64-1": lambda: struct.pack("<Q", 2**64 - 1) + b"{}",
    "header length past the end": lambda: safetensors_bytes({}, declared_length=10**9),
    "header not JSON": lambda: struct.pack("<Q", 6) + b"\xff\xfe{{{{",
    "offsets past the end": lambda: safetensors_bytes({"w": f32([1000, 1000], 0)}, b"\0" * 16),
    "absurd shape": lambda: safetensors_bytes(
        {"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}}, b"\0" * 16
    ),
    "shape disagrees with offsets": lambda: safetensors_bytes(
        {"w": {"dtype": "F32", "shape": [3, 3], "data_offsets": [0, 8]}}, b"\0" * 8
    ),
    "overlapping tensors": lambda: safetensors_bytes(
        {
            "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
        },
        b"\0" * 24,
    ),
    "unknown dtype": lambda: safetensors_bytes(
        {"w": {"dtype": "X99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4
    ),
    "truncated head": lambda: small_head_file()[:-7],
    "no Tagger metadata": lambda: small_head_file(metadata={"format": None}),
    "residual shape mismatch": lambda: small_head_file(shapes={"residual_weight": [3, 7]}),
    "class count mismatch": lambda: small_head_file(shapes={"class_bias": [5]}),
    "one-dimensional weight": lambda: small_head_file(shapes={"imagenet_weight": [80]}),
    "missing tensor": lambda: small_head_file(shapes={"class_bias": [3]}).replace(b'"class_bias"', b'"other_bias"'),
    "description not JSON": lambda: small_head_file(description="{not json"),
    "description without classes": lambda: small_head_file(description=head_description(classes=...)),
    "classes not a list of names": lambda: small_head_file(description=head_description(classes=7)),
    "groups not a mapping": lambda: small_head_file(description=head_description(groups=[1, 2])),
    "group index out of range": lambda: small_head_file(description=head_description(groups={"dog": [10**12]})),
    "infinite temperature": lambda: small_head_file(description=head_description(temperature=1e999)),
    "temperature not a number": lambda: small_head_file(description=head_description(temperature="hot")),
    "version not a number": lambda: small_head_file(metadata={"version": "one"}),
    "newer version": lambda: small_head_file(metadata={"version": "99"}),
    "NaN residual weight": lambda: small_head_file(first_values={"residual_weight": float("nan")}),
    "infinite ImageNet bias": lambda: small_head_file(first_values={"imagenet_bias": float("-inf")}),
    "NaN class bias": lambda: small_head_file(first_values={"class_bias": float("nan")}),
    "weight too large to compute with": lambda: small_head_file(first_values={"imagenet_weight": 3e38}),
    "no ImageNet classes": lambda: small_head_file(
        shapes={"imagenet_weight": [0, 8], "imagenet_bias": [0]}, description=head_description(groups={})
    ),
    "no features": lambda: small_head_file(shapes={"imagenet_weight": [10, 0], "residual_weight": [3, 0]}),
}


@pytest.mark.parametrize("case", sorted(LYING_FILES))
def test_a_lying_head_file_is_a_clear_error(tmp_path: Path, case: str) -> None:
    path = tmp_path / "head.safetensors"
    path.write_bytes(LYING_FILES[case]())
    started = time.monotonic()
    with pytest.raises(HeadError) as refused:
        Head.load(path)
    assert time.monotonic() - started < 2, "a lying header must not make the loader work for it"
    assert str(path) in str(refused.value)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("NaN residual weight", "damaged model file: residual_weight holds 1 NaN or infinite value(s)"),
        ("infinite ImageNet bias", "damaged model file: imagenet_bias holds 1 NaN or infinite value(s)"),
        ("weight too large to compute with", "damaged model file: imagenet_weight holds a value of 3e+38"),
        ("no features", "damaged model file: its ImageNet classifier is 10 x 0"),
    ],
)
def test_a_head_whose_weights_cannot_tag_says_why(tmp_path: Path, case: str, reason: str) -> None:
    path = tmp_path / "head.safetensors"
    path.write_bytes(LYING_FILES[case]())
    with pytest.raises(HeadError) as refused:
        Head.load(path)
    assert str(refused.value).startswith(f"{path}: {reason}")


class TinyEngine:
    """A "backbone" of four features (the picture's mean colour and a constant) in front of a
    random 1000-class ImageNet classifier: enough for zero-shot heads of the default classes."""

    backbone_id = "tiny"
    feature_dim = 4
    preprocessing = Preprocessing(size=8)
    preferred_batch_size = 4

    def extract(self, batch: np.ndarray) -> np.ndarray:
        means = batch.mean(axis=(2, 3))
        return np.concatenate([means, np.ones((len(batch), 1))], axis=1).astype(np.float32)

    def imagenet_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        weight = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
        return weight, np.zeros(1000, dtype=np.float32)

    def describe(self) -> str:
        return "tiny"


def poisoned(head_file: Path) -> Head:
    head = Head.load(head_file)
    head.residual_weight[0, 0] = np.nan
    return head


def test_a_broken_zero_shot_model_is_made_again_and_a_trained_one_refused(tmp_path: Path) -> None:
    library, ids = library_with_photos(tmp_path, {"a.jpg": None, "b.jpg": None})
    tag_library(library, engine=TinyEngine())
    zero_shot = library.current_model_version()
    head_file = library.model_file(zero_shot.head_file)
    poisoned(head_file).save(head_file)

    # Nothing was learned that could be lost: the zero-shot model is made again, and says so.
    outcome = tag_library(library, include_tagged=True, engine=TinyEngine())
    assert outcome.tagged == 2 and "zero-shot model made again" in outcome.describe()
    remade = library.current_model_version()
    assert remade.id != zero_shot.id and remade.mode == "zero-shot" and "damaged" in remade.note
    assert all(0 <= photo.confidence <= 1 for photo in library.photos())
    library.model_file(remade.head_file).unlink()
    assert tag_library(library, include_tagged=True, engine=TinyEngine()).tagged == 2  # a missing file too

    # What a trained model learned is in its file: that is refused, never silently replaced.
    trained_file = library.models_dir / "head-trained.safetensors"
    poisoned(library.model_file(library.current_model_version().head_file)).save(trained_file)
    library.register_model_version(
        mode="quick", backbone_id="tiny", head_file=trained_file, classes=library.class_names(), make_current=True
    )
    with pytest.raises(HeadError, match="residual_weight holds 1 NaN"):
        tag_library(library, include_tagged=True, engine=TinyEngine())
    library.close()


@pytest.mark.slow
def test_a_truncated_current_model_is_a_clear_error(template: TemplateLibrary, tmp_path: Path) -> None:
    root = clone_library(template, tmp_path / "library")
    head_file = current_head_file(root)
    replace_file(head_file, head_file.read_bytes()[: head_file.stat().st_size // 2])
    assert_clean_failure(run_cli(root, "eval", template.photos / "samples"), "not a Tagger model file")
    tagged = run_cli(root, "tag", "--all")  # a zero-shot model, made again (see the test above)
    assert_success(tagged)
    assert "made again" in tagged.stdout and "not a Tagger model file" in tagged.stdout


# -- crafted library databases ----------------------------------------------------------------


HOSTILE_CLASS_NAMES = ("../../escaped", "a/b", "..", "/absolute", "con", "x\\..\\..\\y", ".hidden", "")


@pytest.fixture
def crafted_library(tmp_path: Path) -> tuple[Path, Path]:
    """A library whose database was edited behind Tagger's back, and the tree it lives in."""
    from tagger.library.importer import import_paths

    photos = tmp_path / "photos"
    generate_photos(photos / "sub", len(HOSTILE_CLASS_NAMES) + 2, seed=7)
    victim = generate_photos(tmp_path / "outside", 1, seed=8)[0]
    root = tmp_path / "library"
    with Library(root) as library:
        import_paths(library, [photos])
    db = sqlite3.connect(root / "library.sqlite3")
    with db:
        # A `../` path that resolves to a real photo outside the imported folder, and one
        # that is not even absolute.
        for index, crafted in enumerate([f"{photos}/sub/../../outside/{victim.name}", "relative/../../x.jpg"]):
            db.execute("INSERT INTO photos (path, content_hash, added_at) VALUES (?, ?, 0)", (crafted, f"c{index}"))
        ids = [row[0] for row in db.execute("SELECT id FROM photos ORDER BY id")]
        for position, (name, photo_id) in enumerate(zip(HOSTILE_CLASS_NAMES, ids), start=10):
            class_id = db.execute(
                "INSERT INTO classes (name, position, created_at) VALUES (?, ?, 0)", (name, position)
            ).lastrowid
            db.execute("UPDATE photos SET label_class_id = ?, label_source = 'user' WHERE id = ?", (class_id, photo_id))
        dog = db.execute("SELECT id FROM classes WHERE name = 'dog'").fetchone()[0]
        db.execute("UPDATE photos SET label_class_id = ?, label_source = 'user' WHERE path LIKE '%outside%'", (dog,))
    db.close()
    return root, tmp_path


def new_or_changed_files(before: dict, after: dict) -> list[str]:
    return sorted(path for path, state in after.items() if before.get(path) != state)


def test_sorting_a_crafted_library_stays_in_the_destination(crafted_library: tuple[Path, Path]) -> None:
    root, tree = crafted_library
    destination = tree / "sorted"
    before = snapshot_files(tree)
    result = run_cli(root, "sort", destination)
    assert "Traceback" not in result.stderr, result.stderr
    # The library's own files (database, lock) change too; anything else must be in destination.
    written = [p for p in new_or_changed_files(before, snapshot_files(tree)) if not p.startswith(str(root) + os.sep)]
    assert written, "the sort wrote nothing at all: the test proves nothing"
    for path in written:
        assert os.path.realpath(path).startswith(str(destination.resolve()) + os.sep), path


def test_exporting_a_crafted_library_writes_only_the_chosen_file(crafted_library: tuple[Path, Path]) -> None:
    root, tree = crafted_library
    (tree / "exports").mkdir()
    for export_format in ("csv", "json"):
        target = tree / "exports" / f"labels.{export_format}"
        before = snapshot_files(tree)
        assert_success(run_cli(root, "export", "--format", export_format, "-o", target))
        written = [p for p in new_or_changed_files(before, snapshot_files(tree)) if not p.startswith(str(root))]
        assert written == [str(target)]
    rows = json.loads((tree / "exports" / "labels.json").read_text())
    assert {"../../escaped", "a/b"} <= {row.get("label") for row in rows}


def test_xmp_export_of_a_crafted_library_writes_only_sidecars_of_listed_photos(
    crafted_library: tuple[Path, Path],
) -> None:
    root, tree = crafted_library
    before = snapshot_files(tree)
    result = run_cli(root, "export", "--format", "xmp")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    with Library(root, readonly=True) as library:
        listed = {real_path(photo.path) for photo in library.photos() if os.path.isfile(photo.path)}
    written = [p for p in new_or_changed_files(before, snapshot_files(tree)) if not p.startswith(str(root))]
    assert written, "no sidecar was written: the test proves nothing"
    for path in written:
        assert path.endswith(".xmp"), path
        assert any(path in (str(Path(photo).with_suffix(".xmp")), photo + ".xmp") for photo in listed), path
        assert not os.path.islink(path)


def test_a_model_file_outside_the_library_is_not_loaded_as_code(template: TemplateLibrary, tmp_path: Path) -> None:
    root = clone_library(template, tmp_path / "library")
    marker = tmp_path / "code-ran"
    evil = tmp_path / "elsewhere" / "head.safetensors"
    evil.parent.mkdir()
    evil.write_bytes(pickle_payload(marker))
    db = sqlite3.connect(root / "library.sqlite3")
    with db:
        db.execute("UPDATE model_versions SET head_file = ? WHERE is_current = 1", (os.path.relpath(evil, root),))
    db.close()
    before = snapshot_files(tmp_path / "elsewhere")
    assert_clean_failure(run_cli(root, "eval", template.photos / "samples"), "safetensors")
    tagged = run_cli(root, "tag", "--all")  # a zero-shot model: made again, inside the library
    assert_success(tagged)
    assert "made again" in tagged.stdout
    assert not marker.exists()
    assert snapshot_files(tmp_path / "elsewhere") == before


@pytest.mark.parametrize("damage", ["newer schema", "not a database"])
def test_a_foreign_or_future_database_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "library"
    Library(root).close()
    database = root / "library.sqlite3"
    if damage == "newer schema":
        db = sqlite3.connect(database)
        db.execute("PRAGMA user_version = 99")
        db.close()
        expected = "newer Tagger"
    else:
        database.write_bytes(b"SQLite format 2\0" + os.urandom(4096))
        expected = "not a usable Tagger library"
    for command in (["status"], ["label", str(tmp_path), "--as", "dog"], ["export"]):
        assert_clean_failure(run_cli(root, *command), expected)
