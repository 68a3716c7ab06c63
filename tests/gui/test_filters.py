"""Filtering and sorting the grid, and the item model's contract with Qt's views."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from tagger.gui.photos.model import PhotoListModel, PhotoRole
from tagger.gui.photos.table import PhotoFilter, Show, SortOrder, SourceFilter


def names(model: PhotoListModel) -> list[str]:
    return [model.index(row).data(Qt.ItemDataRole.DisplayRole) for row in range(model.rowCount())]


def loaded_model(library) -> PhotoListModel:  # noqa: ANN001
    model = PhotoListModel(library)
    model.reload()
    return model


def test_the_model_passes_qts_model_tests(qtmodeltester, seeded_library):
    model = loaded_model(seeded_library)
    qtmodeltester.check(model, force_py=True)
    model.set_filter(PhotoFilter(show=Show.UNLABELED))
    qtmodeltester.check(model, force_py=True)


def test_filters_by_label_source_readability_and_name(seeded_library):
    model = loaded_model(seeded_library)
    assert model.rowCount() == 11
    model.set_filter(PhotoFilter(show=Show.CLASS, class_name="dog"))
    assert names(model) == ["img_00.jpg", "img_01.jpg", "img_03.jpg"]
    model.set_filter(PhotoFilter(show=Show.CLASS, class_name="dog", source=SourceFilter.CONFIRMED))
    assert names(model) == ["img_00.jpg", "img_01.jpg"]
    model.set_filter(PhotoFilter(source=SourceFilter.GUESSED))
    assert names(model) == ["img_03.jpg", "img_04.jpg", "img_05.jpg"]
    model.set_filter(PhotoFilter(show=Show.UNLABELED))
    assert names(model) == ["img_06.jpg", "img_07.jpg", "img_08.jpg", "img_09.jpg"]
    model.set_filter(PhotoFilter(show=Show.UNREADABLE))
    assert names(model) == ["broken.jpg"]
    assert model.index(0).data(PhotoRole.ERROR) == "truncated or corrupt JPEG"
    model.set_filter(PhotoFilter(search="IMG_0"))
    assert len(names(model)) == 10
    model.set_filter(PhotoFilter(show=Show.CLASS, class_name="elephant", search="4"))
    assert names(model) == ["img_04.jpg"]


def test_sort_orders(seeded_library):
    model = loaded_model(seeded_library)
    model.set_sort_order(SortOrder.NAME)
    assert names(model)[0] == "broken.jpg" and names(model)[1:] == [f"img_{n:02d}.jpg" for n in range(10)]
    model.set_sort_order(SortOrder.DATE)  # the seeded photos get older as their number grows
    assert names(model)[:3] == ["broken.jpg", "img_09.jpg", "img_08.jpg"]
    model.set_sort_order(SortOrder.FOLDER)
    folders = [Path(model.index(row).data(PhotoRole.PATH)).parent.name for row in range(model.rowCount())]
    assert folders == sorted(folders)
    assert names(model)[:3] == ["broken.jpg", "img_00.jpg", "img_02.jpg"]
    model.set_sort_order(SortOrder.LEAST_CONFIDENT)
    assert names(model)[:3] == ["img_04.jpg", "img_05.jpg", "img_03.jpg"]  # 55%, 72%, 91%
    assert set(names(model)[-3:]) == {"img_00.jpg", "img_01.jpg", "img_02.jpg"}  # confirmed last
    model.set_sort_order(SortOrder.ADDED)
    assert names(model)[0] == "img_00.jpg" and names(model)[-1] == "broken.jpg"


def test_photos_added_later_land_in_their_sorted_place(qtmodeltester, seeded_library):
    from tagger.domain import ImportSummary, ScannedFile

    model = loaded_model(seeded_library)
    model.set_sort_order(SortOrder.NAME)
    qtmodeltester.check(model, force_py=True)
    new_ids = seeded_library.record_scanned(
        [ScannedFile(f"/photos/c/{name}", 5, 1.0, name * 8, 8, 8, "JPEG") for name in ("img_055.jpg", "aaa.jpg")],
        ImportSummary(),
    )
    model.add_photos(new_ids)
    assert names(model)[:2] == ["aaa.jpg", "broken.jpg"]
    assert names(model).index("img_055.jpg") == names(model).index("img_05.jpg") + 1
    model.set_filter(PhotoFilter(show=Show.CLASS, class_name="dog"))
    later = seeded_library.record_scanned(
        [ScannedFile("/photos/c/zzz.jpg", 5, 1.0, "9" * 64, 8, 8, "JPEG")], ImportSummary()
    )
    model.add_photos(later)
    assert "zzz.jpg" not in names(model)  # unlabeled: not shown under "dog"
    assert model.total_count() == 14


def test_the_filter_bar_drives_the_grid(qtbot, seeded_window):
    bar = seeded_window.filter_bar
    model = seeded_window.photo_model
    bar.show_box.setCurrentIndex(bar.show_box.findText("Unlabeled"))
    assert model.rowCount() == 4
    bar.source_box.setCurrentIndex(bar.source_box.findText("Guessed only"))
    assert model.rowCount() == 0
    bar.show_box.setCurrentIndex(bar.show_box.findText("All photos"))
    assert model.rowCount() == 3
    bar.source_box.setCurrentIndex(bar.source_box.findText("Confirmed and guessed"))
    bar.sort_box.setCurrentIndex(bar.sort_box.findText("Least confident first"))
    assert names(model)[0] == "img_04.jpg"
    qtbot.keyClicks(bar.search_box, "img_0")
    bar.flush_search()
    assert model.rowCount() == 10
    qtbot.waitUntil(lambda: "11 photos (10 shown)" in seeded_window.counts_label.text())


def test_labeled_photos_stay_in_an_unlabeled_view_until_it_is_applied_again(qtbot, seeded_window):
    seeded_window.filter_bar.set_filter(PhotoFilter(show=Show.UNLABELED))
    gallery = seeded_window.gallery
    gallery.setFocus()
    gallery.select_row(0)
    qtbot.keyClick(gallery, Qt.Key.Key_1)
    assert seeded_window.photo_model.rowCount() == 4  # no jump under the user's eyes
    assert gallery.currentIndex().row() == 1
    qtbot.keyClick(gallery, Qt.Key.Key_F5)
    assert seeded_window.photo_model.rowCount() == 3
    assert gallery.current_photo_id() is not None  # something stays selected


def test_status_bar_counts_photos_per_label_and_shows_the_device(seeded_window):
    text = seeded_window.counts_label.text()
    assert text.startswith("11 photos")
    assert "dog 3 (2 ✓)" in text and "elephant 2 (1 ✓)" in text and "other 1" in text
    assert "unlabeled 5" in text
    assert seeded_window.device_label.text() == "CPU, 2 threads"


def _record_many(library, count: int) -> list[int]:
    from tagger.domain import ImportSummary, ScannedFile

    files = [ScannedFile(f"/big/f{n % 10}/p{n:05d}.jpg", 1, float(n), f"{n:064x}", 1, 1, "JPEG") for n in range(count)]
    return library.record_scanned(files, ImportSummary())


def test_the_grid_reads_only_the_photos_it_shows(library, monkeypatch):
    from tagger.gui.photos.table import BLOCK_ROWS

    ids = _record_many(library, 5000)
    asked: list[int] = []
    real_rows = library.gallery_rows
    monkeypatch.setattr(library, "gallery_rows", lambda photo_ids: asked.extend(photo_ids) or real_rows(photo_ids))
    model = loaded_model(library)
    assert model.rowCount() == 5000 and asked == []
    assert model.index(4321).data(Qt.ItemDataRole.DisplayRole) == "p04321.jpg"
    assert model.index(4300).data(PhotoRole.PATH) == "/big/f0/p04300.jpg"
    assert model.index(4321).data(PhotoRole.ID) == ids[4321]
    assert len(asked) <= BLOCK_ROWS and ids[4321] in asked  # one block, read once


def test_rows_are_found_by_photo_and_repainted_in_any_order(library):
    ids = _record_many(library, 300)
    model = loaded_model(library)
    model.set_sort_order(SortOrder.NAME)
    model.set_filter(PhotoFilter(search="p001"))
    assert names(model) == [f"p{n:05d}.jpg" for n in range(100, 200)]
    model.set_filter(PhotoFilter())
    model.set_sort_order(SortOrder.FOLDER)  # f0: p00000, p00010, ...; then f1
    assert [model.row_of(photo_id) for photo_id in (ids[0], ids[10], ids[1])] == [0, 1, 30]
    assert model.row_of(10**9) is None
    library.set_user_labels([ids[10], ids[1]], "dog")
    repainted: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda first, last: repainted.append((first.row(), last.row())))
    model.refresh_photos([ids[10], ids[1]])
    assert repainted == [(1, 1), (30, 30)]
    assert model.index(1).data(PhotoRole.LABEL) == "dog"
    assert model.label_counts() == ({"dog": 2, "elephant": 0, "other": 0}, {"dog": 2, "elephant": 0, "other": 0})


def test_a_hundred_thousand_photos_load_quickly(library):
    import time

    from tagger.domain import ImportSummary, ScannedFile

    files = [
        ScannedFile(f"/big/f{n % 100}/p{n:06d}.jpg", 1, float(n), f"{n:064x}", 1, 1, "JPEG") for n in range(100_000)
    ]
    library.record_scanned(files, ImportSummary())
    model = PhotoListModel(library)
    started = time.perf_counter()
    model.reload()
    elapsed = time.perf_counter() - started
    assert model.rowCount() == 100_000
    assert elapsed < 1.5, f"loading 100,000 photos took {elapsed:.2f} s"
