"""The command line end to end, on a temporary library and the committed real photos."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from tagger.cli.main import main

PHOTOS = Path(__file__).resolve().parent / "data" / "photos"


@pytest.fixture
def tagger(tmp_path, onnx_cache, capsys):
    """Run `tagger ARGS` on a fresh library; returns (exit code, stdout, stderr)."""
    library = tmp_path / "library"
    (library / "cache").mkdir(parents=True)
    for file in onnx_cache.iterdir():
        shutil.copy2(file, library / "cache" / file.name)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--library", str(library), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def export_csv(tagger) -> list[dict[str, str]]:
    code, out, _ = tagger("export", "--format", "csv")
    assert code == 0
    assert out.splitlines()[0] == "path,label,source,confidence,model_version"
    return list(csv.DictReader(io.StringIO(out)))


def test_import_tag_label_export_round_trip(tagger, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "letter.jpg").write_text("not a photo")
    shutil.copy(next(PHOTOS.glob("dog/*.jpg")), broken / "same-dog.jpg")

    code, out, err = tagger("import", str(PHOTOS), str(broken))
    assert code == 0
    assert "8 added, 1 skipped as duplicates, 1 unreadable" in err
    assert "letter.jpg\tnot an image (text file)" in out

    code, out, _ = tagger("tag", "--device", "cpu")
    assert code == 0 and "8 photo(s) tagged" in out
    rows = export_csv(tagger)
    assert len(rows) == 9
    for row in rows:
        truth = Path(row["path"]).parent.name
        if truth == "broken":
            assert row["label"] == "" and row["source"] == ""
        else:
            assert (row["label"], row["source"], row["model_version"]) == (truth, "model", "1")
            assert 0.5 < float(row["confidence"]) <= 1

    airplane = next(PHOTOS.glob("other/*airplanes*"))
    code, out, _ = tagger("label", str(airplane), "--as", "elephant")
    assert code == 0 and "1 photo(s) labeled elephant" in out
    code, out, _ = tagger("tag", "--all")
    assert code == 0 and "7 photo(s) tagged (7 from cached features)" in out
    (mine,) = [row for row in export_csv(tagger) if row["path"] == str(airplane)]
    assert (mine["label"], mine["source"]) == ("elephant", "user")  # the model never overwrites it

    code, out, _ = tagger("export", "--format", "json")
    assert {entry["label"] for entry in json.loads(out)} == {"dog", "elephant", "other", None}
    code, out, _ = tagger("status", "--json")
    status = json.loads(out)
    assert (status["photos"], status["unreadable"], status["user_labeled"]) == (9, 1, 1)


def test_eval_scores_a_sorted_folder_without_adding_anything(tagger):
    code, out, _ = tagger("eval", str(PHOTOS), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["report"]["accuracy"] == 1.0
    assert report["report"]["confusion"] == [[3, 0, 0], [0, 3, 0], [0, 0, 2]]
    code, out, _ = tagger("status", "--json")
    assert json.loads(out)["photos"] == 0


def test_classes_train_and_rollback(tagger):
    tagger("import", str(PHOTOS))
    tagger("tag")
    code, out, _ = tagger("classes", "add", "cow")
    assert code == 0 and "4. cow" in out
    code, out, _ = tagger("classes", "rename", "cow", "cattle")
    assert "4. cattle" in out
    code, _, err = tagger("classes", "remove", "nothing")
    assert code == 1 and "no class called 'nothing'" in err

    code, _, err = tagger("train")
    assert code == 1 and err.startswith("tagger: ") and "label" in err  # no labels yet: told what to do

    for truth in ("dog", "elephant", "other"):
        code, _, _ = tagger("label", *map(str, sorted((PHOTOS / truth).iterdir())), "--as", truth)
        assert code == 0
    code, out, _ = tagger("train", "--mode", "quick", "--promote")
    assert code == 0 and "is now current" in out
    code, out, _ = tagger("models")
    versions = [line for line in out.splitlines() if line.strip() and not line.startswith("        ")]
    assert versions[-1].startswith("*") and "quick" in versions[-1]
    # Under each trained version, the figures it was judged by, as the app shows them.
    assert "held-out labels (95% sure: " in out.splitlines()[-1]
    code, out, _ = tagger("models", "use", "1")
    assert code == 0 and "version 1" in out
    assert next(line for line in out.splitlines() if line.startswith("*")).split()[1] == "1"


def test_suspects_and_explain(tagger, tmp_path):
    tagger("import", str(PHOTOS))
    tagger("tag")
    for truth in ("dog", "elephant", "other"):
        tagger("label", *map(str, sorted((PHOTOS / truth).iterdir())), "--as", truth)
    code, out, _ = tagger("suspects", "--top", "5")
    assert code == 0 and out.splitlines()[0] == "path,label,suggested,score,reason"

    overlay = tmp_path / "evidence.png"
    elephant = next(PHOTOS.glob("elephant/*.jpg"))
    code, out, _ = tagger("explain", str(elephant), "--class", "elephant", "-o", str(overlay))
    assert code == 0 and overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "On its own, the left third looks like " in out  # the evidence in words, third by third


def label_by_folder(tagger, dog_label: str = "dog") -> None:
    for truth in ("dog", "elephant", "other"):
        code, _, err = tagger(
            "label", *map(str, sorted((PHOTOS / truth).iterdir())), "--as", dog_label if truth == "dog" else truth
        )
        assert code == 0, err


def stored_versions_and_features(tmp_path) -> tuple[list[str], int]:
    """The modes of the model versions, and how many photos have features for the current one."""
    from tagger.library.library import Library

    with Library(tmp_path / "library", readonly=True) as library:
        current = library.current_model_version()
        ids = [photo.id for photo in library.photos()]
        return [v.mode for v in library.model_versions()], len(library.store.features(current.backbone_id, ids)[0])


def test_import_label_train_computes_the_features_and_the_first_model_itself(tagger, tmp_path):
    tagger("import", str(PHOTOS))
    label_by_folder(tagger)
    code, out, err = tagger("train")
    assert code == 0, err
    assert "features computed for 8 photo(s) you labeled" in err and "tagger tag" not in err
    assert "quick training on 8 labels" in out
    assert stored_versions_and_features(tmp_path) == (["zero-shot", "quick"], 8)
    code, out, err = tagger("train")  # nothing left to compute the second time
    assert code == 0 and "features computed" not in err and "quick training on 8 labels" in out


def test_import_labels_tree_then_train(tagger, tmp_path):
    code, out, _ = tagger("import-labels", "--tree", str(PHOTOS))
    assert code == 0
    code, out, err = tagger("train", "--keep")
    assert code == 0, err
    assert "quick training on 8 labels" in out and "NOT made current" in out
    assert stored_versions_and_features(tmp_path) == (["zero-shot", "quick"], 8)


def test_import_labels_then_suspects(tagger):
    tagger("import-labels", "--tree", str(PHOTOS))
    code, out, err = tagger("suspects")
    assert code == 0, err
    assert out.splitlines()[0] == "path,label,suggested,score,reason"
    assert "features computed for 8 photo(s) you labeled" in err and "of your 8 labels" in err


def test_tag_after_import_labels_computes_the_labeled_photos_features(tagger, tmp_path):
    tagger("import-labels", "--tree", str(PHOTOS))
    code, out, _ = tagger("tag")
    assert code == 0 and "0 photo(s) tagged" in out and "features computed for 8 photo(s) you labeled" in out
    assert stored_versions_and_features(tmp_path) == (["zero-shot"], 8)
    for row in export_csv(tagger):  # the labels are still the user's
        assert (row["label"], row["source"]) == (Path(row["path"]).parent.name, "user")
    code, out, _ = tagger("tag")
    assert code == 0 and "nothing to tag" in out


def test_other_labels_given_before_a_class_existed_are_the_first_suspects(tagger):
    # The dalmatians were filed under "other" while there was no "dog" class; then "dog" came.
    tagger("import", str(PHOTOS))
    tagger("classes", "remove", "dog")
    label_by_folder(tagger, dog_label="other")
    tagger("classes", "add", "dog")
    dalmatians = sorted((PHOTOS / "dog").iterdir())
    tagger("label", str(dalmatians[0]), "--as", "dog")
    code, out, err = tagger("suspects")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {row["path"] for row in rows[:2]} == {str(path) for path in dalmatians[1:]}
    for row in rows[:2]:
        assert (row["label"], row["suggested"]) == ("other", "dog")
        assert row["reason"] == "labeled other before 'dog' existed"


def test_clear_errors_and_exit_codes(tagger, tmp_path):
    code, _, err = tagger("import", str(tmp_path / "missing"))
    assert code == 1 and "no such file or folder" in err
    code, _, err = tagger("label", str(tmp_path / "x.jpg"), "--as", "dog")
    assert code == 1 and "not in the library" in err
    code, _, err = tagger("eval", str(tmp_path / "missing"))
    assert code == 1 and "is not a folder" in err
    with pytest.raises(SystemExit) as usage:
        main(["tag", "--device", "tpu"])
    assert usage.value.code == 2


def test_export_model_writes_the_three_files_and_says_why_when_it_cannot(tagger, tmp_path):
    code, _, _ = tagger("import", str(PHOTOS))
    assert code == 0
    code, out, err = tagger("export-model", "-o", str(tmp_path / "model"))
    assert code == 0, err
    written = [Path(line) for line in out.splitlines()]
    assert [path.name for path in written] == ["model.onnx", "model.torchscript.pt", "model.json"]
    assert all(path.stat().st_size > 0 for path in written)

    # A head file that is not one: the export's child process fails, the CLI says why in a line.
    library = tmp_path / "library"
    code, _, _ = tagger("tag")
    assert code == 0
    for head in (library / "models").glob("head-*"):
        head.write_bytes(b"not a model")
    code, out, err = tagger("export-model", "-o", str(tmp_path / "again"))
    assert code == 1 and out == ""
    assert err.startswith("tagger: the model was not exported: ") and "Traceback" not in err
