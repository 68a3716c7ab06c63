"""Near-duplicates: the perceptual hash, the importer's flag, `tagger duplicates`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tagger.cli.main import main
from tagger.images.perceptual import NEAR_DUPLICATE_BITS, difference_hash, distances
from tagger.library.importer import import_paths
from tagger.library.near_duplicates import QUARTERS, HashIndex, groups_from_links, nearest, quarter_probes

PHOTOS = sorted((Path(__file__).parent / "data" / "photos").glob("*/*.jpg"))


def _photo(folder: Path, index: int) -> Path:
    """One of the suite's real photos (8 of them), copied into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"photo-{index}.jpg"
    target.write_bytes(PHOTOS[index].read_bytes())
    return target


def _photo_with_copies(folder: Path, index: int) -> tuple[Path, Path, Path]:
    """A real photo, a copy at half size and a copy re-encoded at JPEG quality 50."""
    original = _photo(folder, index)
    picture = Image.open(original).convert("RGB")
    resized = folder / f"photo-{index}-small.jpg"
    picture.resize((picture.width // 2, picture.height // 2), Image.Resampling.LANCZOS).save(resized, quality=85)
    reencoded = folder / f"photo-{index}-q50.jpg"
    picture.save(reencoded, quality=50)
    return original, resized, reencoded


def _checksums(paths) -> dict[Path, str]:
    return {Path(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


# -- the hash ------------------------------------------------------------------------


def test_a_resized_and_a_reencoded_copy_hash_alike_and_distinct_photos_do_not(tmp_path):
    hashes = {}
    for seed in range(len(PHOTOS)):
        original, resized, reencoded = _photo_with_copies(tmp_path, seed)
        hashes[seed] = difference_hash(original)
        copies = np.array([difference_hash(resized), difference_hash(reencoded)])
        assert distances(copies, hashes[seed]).max() <= NEAR_DUPLICATE_BITS
    distinct = np.array(list(hashes.values()))
    for seed, one in hashes.items():
        apart = distances(distinct, one)
        assert sorted(apart)[1] > NEAR_DUPLICATE_BITS, f"photo {seed} hashes like another"


def test_an_upright_copy_of_a_rotated_photo_hashes_alike(tmp_path):
    picture = Image.open(PHOTOS[7]).convert("RGB")
    picture.save(tmp_path / "upright.jpg", quality=90)
    # The same picture stored sideways with an EXIF orientation saying to turn it back.
    sideways = picture.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "sideways.jpg", quality=90, exif=exif.tobytes())
    upright, turned = difference_hash(tmp_path / "upright.jpg"), difference_hash(tmp_path / "sideways.jpg")
    assert distances(np.array([turned]), upright)[0] <= NEAR_DUPLICATE_BITS


def test_distances_count_every_bit_of_negative_hashes():
    assert list(distances(np.array([-1, 0, -(2**63)]), 0)) == [64, 0, 1]


def test_the_quarters_find_every_photo_within_the_near_duplicate_distance():
    # Spread over fewer bits than twice the quarters, some quarter is at most one bit off.
    assert NEAR_DUPLICATE_BITS < 2 * QUARTERS
    assert [len(values) for values in quarter_probes(-1)] == [17] * QUARTERS
    assert quarter_probes(0x0001_0002_0003_0004)[0][:3].tolist() == [4, 5, 6]
    assert quarter_probes(-(2**63))[3][0] == 0x8000


def test_nearest_takes_the_closest_within_reach_and_the_earliest_of_a_tie():
    ids, hashes = np.array([9, 5, 7]), np.array([0b1111, 0b1111, 0b0111])
    assert nearest(ids, hashes, 0b1111) == 5
    assert nearest(ids, hashes, 0b0011) == 7
    assert nearest(ids, hashes, 0b1111 << 40) is None
    assert nearest(np.zeros(0), np.zeros(0), 0) is None


def _flip(signed_hash: int, bits) -> int:
    """The 64-bit hash with these bits turned over, signed as stored."""
    flipped = (signed_hash % 2**64) ^ sum(1 << int(bit) for bit in bits)
    return flipped - 2**64 if flipped >= 2**63 else flipped


def test_the_index_finds_what_comparing_with_every_photo_finds_as_it_grows_and_shrinks():
    rng = np.random.default_rng(7)
    random_hash = lambda: int(rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max))  # noqa: E731
    known = {photo_id: random_hash() for photo_id in range(1, 301)}
    index = HashIndex(np.array(list(known)), np.array(list(known.values())))
    # More photos than wait unsorted, many of them copies 0-8 bits off earlier ones (some alike),
    # and the extremes of the range; some removed and some changed on the way.
    for photo_id in range(301, 301 + 5000):
        earlier = list(known.values())[int(rng.integers(0, len(known)))]
        value = _flip(earlier, rng.choice(64, size=rng.integers(0, 9), replace=False))
        if photo_id % 5 == 0:
            value = random_hash()
        expected = nearest(np.array(list(known)), np.array(list(known.values())), value)
        assert index.closest(value) == expected
        known[photo_id] = value
        index.add(photo_id, value)
        if photo_id % 97 == 0:
            index.remove([photo_id - 50, photo_id - 51])
            known.pop(photo_id - 50, None), known.pop(photo_id - 51, None)
        if photo_id % 89 == 0 and photo_id - 10 in known:
            known[photo_id - 10] = random_hash()
            index.update(photo_id - 10, known[photo_id - 10])
    assert len(index) == len(known)
    for value in (-1, -(2**63), 2**63 - 1, 0):
        index.add(max(known) + 1, value)
        known[max(known) + 1] = value
        assert index.closest(value) == nearest(np.array(list(known)), np.array(list(known.values())), value)


def test_the_library_reads_its_hashes_exactly(library):
    values = [-1, -(2**63), 2**63 - 1, 0, 123456789012345678]
    with library.store.transaction():
        for number, value in enumerate(values):
            library.store.insert_photo(
                f"/photos/{number}.jpg",
                content_hash=f"{number:064x}",
                size_bytes=1,
                mtime=0.0,
                width=1,
                height=1,
                format="JPEG",
                readable=True,
                error=None,
                perceptual_hash=value,
            )
    ids, hashes = library.store.perceptual_hashes()
    assert sorted(zip(ids.tolist(), hashes.tolist())) == list(enumerate(values, start=1))


def test_an_edited_photo_without_a_hash_keeps_none(library, tmp_path):
    original, resized, _ = _photo_with_copies(tmp_path / "edit", 2)
    import_paths(library, [original])
    Image.new("RGB", (64, 64), (128, 128, 128)).save(original)  # a blank frame has no hash
    import_paths(library, [original])
    assert library.known_files([str(original)])[str(original)][3] is None
    assert import_paths(library, [resized]).near_duplicates == []


def test_links_join_into_groups():
    assert groups_from_links([(3, 1), (7, 3), (8, 5)]) == [[1, 3, 7], [5, 8]]


# -- the importer ------------------------------------------------------------------------


def test_the_importer_adds_near_duplicates_and_flags_them(library, tmp_path):
    original, resized, reencoded = _photo_with_copies(tmp_path / "first", 1)
    other = _photo(tmp_path / "first", 2)
    first = import_paths(library, [original, other])
    assert len(first.added) == 2 and first.near_duplicates == []

    second = import_paths(library, [resized, reencoded])
    assert sorted(second.added) == sorted([str(resized), str(reencoded)])
    assert sorted(second.near_duplicates) == sorted([(str(resized), str(original)), (str(reencoded), str(original))])

    groups = library.near_duplicate_groups()
    assert [[photo.path for photo in group] for group in groups] == [[str(original), str(resized), str(reencoded)]]

    # A re-import reads nothing again and flags nothing again.
    again = import_paths(library, [tmp_path / "first"])
    assert again.near_duplicates == [] and again.unchanged == 4


def test_photos_of_one_import_are_compared_with_each_other(library, tmp_path):
    original, resized, _ = _photo_with_copies(tmp_path / "both", 3)
    summary = import_paths(library, [original, resized])
    assert summary.near_duplicates == [(str(resized), str(original))]


def test_photos_imported_before_hashes_were_kept_get_one_on_the_next_import(library, tmp_path):
    original, resized, _ = _photo_with_copies(tmp_path / "old", 4)
    import_paths(library, [original])
    with library.store.transaction():
        library.store._db.execute("UPDATE photos SET perceptual_hash = NULL")
    import_paths(library, [original])
    assert library.known_files([str(original)])[str(original)][3] is not None
    assert import_paths(library, [resized]).near_duplicates == [(str(resized), str(original))]


def test_keeping_one_removes_the_others_from_the_library_only(library, tmp_path):
    original, resized, reencoded = _photo_with_copies(tmp_path / "keep", 5)
    import_paths(library, [original, resized, reencoded])
    before = _checksums([original, resized, reencoded])
    library.set_user_labels([library.photo_by_path(original).id], "dog")

    kept_id = library.photo_by_path(resized).id
    assert library.has_near_duplicate(kept_id) and library.has_near_duplicate(library.photo_by_path(original).id)
    removed = library.keep_near_duplicate(kept_id)

    assert sorted(photo.path for photo in removed) == sorted([str(original), str(reencoded)])
    assert [photo.path for photo in library.photos()] == [str(resized)]
    assert library.near_duplicate_groups() == [] and not library.has_near_duplicate(kept_id)
    assert _checksums([original, resized, reencoded]) == before
    assert library.store.foreign_key_problems() == []


# -- the command line ------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path, capsys):
    def run_tagger(*args: str) -> tuple[int, str, str]:
        code = main(["--library", str(tmp_path / "library"), *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run_tagger


def test_cli_flags_lists_and_keeps_one_without_touching_files(run, tmp_path):
    original, resized, reencoded = _photo_with_copies(tmp_path / "photos", 6)
    unrelated = _photo(tmp_path / "photos", 0)
    code, _out, _err = run("import", str(original), str(unrelated))
    assert code == 0
    before = _checksums((tmp_path / "photos").iterdir())

    code, out, err = run("import", str(tmp_path / "photos"))
    assert code == 0
    assert f"near-duplicate\t{resized}\t(like {original})" in out.splitlines()
    assert "2 near-duplicate(s) of photos already in the library\n(kept: listed with `tagger duplicates`)" in err

    code, out, err = run("duplicates")
    assert code == 0
    assert out.splitlines() == [f"1\t{original}", f"1\t{reencoded}", f"1\t{resized}"]  # in import order
    assert "1 group(s) of near-duplicates (3 photos)" in err and "never deleted" in err

    code, out, err = run("duplicates", "--keep", str(reencoded))
    assert code == 0
    assert sorted(out.splitlines()) == sorted([f"removed\t{original}", f"removed\t{resized}"])
    assert "2 photo(s) removed from the library" in err and "never deleted or changed" in err

    code, out, err = run("duplicates")
    assert (code, out) == (0, "") and "no near-duplicates" in err
    assert _checksums((tmp_path / "photos").iterdir()) == before
    code, out, _err = run("status", "--json")
    assert '"photos": 2' in out


def test_cli_keep_refuses_a_photo_outside_any_group(run, tmp_path):
    lone = _photo(tmp_path, 7)
    run("import", str(lone))
    code, _out, err = run("duplicates", "--keep", str(lone))
    assert code == 1 and "not a near-duplicate" in err
    code, _out, err = run("duplicates", "--keep", str(tmp_path / "nowhere.jpg"))
    assert code == 1 and "not in the library" in err
    original, resized, _ = _photo_with_copies(tmp_path / "pair", 3)
    run("import", str(original), str(resized))
    code, _out, err = run("duplicates", "--keep", str(original), str(resized))
    assert code == 1 and "same group" in err
    assert run("duplicates")[1].count("\n") == 2  # nothing removed


def test_pictures_without_detail_get_no_hash_and_are_nobodys_near_duplicate(library, make_image):
    grey = make_image("blank/grey.jpg", size=(400, 300), color=(128, 128, 128))
    black = make_image("blank/black.png", size=(300, 200), color=(0, 0, 0))
    assert difference_hash(grey) is None and difference_hash(black) is None
    summary = import_paths(library, [grey, black])
    assert len(summary.added) == 2 and summary.near_duplicates == []
