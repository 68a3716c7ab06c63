"""XMP keywords: exiftool must read what Tagger writes, and nothing else may be lost."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tagger.common.user_files import current_umask
from tagger.domain import LabelSource
from tagger.errors import XmpError
from tagger.exchange.sidecar_names import SidecarNaming, sidecar_path_for
from tagger.exchange.xmp import apply_xmp_changes, keywords_in_file, plan_xmp_changes
from tagger.exchange.xmp_document import parse_xmp
from tagger.images.jpeg_xmp import XMP_SIGNATURE, header_segments, read_xmp_packet
from tests.helpers.builders import add_photos, library_with_photos, sha256_of, write_image

needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")


def exiftool_keywords(path: Path) -> tuple[list[str], list[str]]:
    output = subprocess.run(
        ["exiftool", "-j", "-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    record = json.loads(output)[0]

    def as_list(value: object) -> list[str]:
        if value is None:
            return []
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]

    return as_list(record.get("Subject")), as_list(record.get("HierarchicalSubject"))


def exiftool_fields(path: Path, *tags: str) -> dict:
    output = subprocess.run(["exiftool", "-j", *tags, str(path)], check=True, capture_output=True, text=True).stdout
    return json.loads(output)[0]


def save(library, photo_ids=None, **options):
    plan = plan_xmp_changes(library, photo_ids, **options)
    return plan, apply_xmp_changes(plan)


OTHER_APP_SIDECAR = """<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/' x:xmptk='SomeEditor 3.1'>
<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>
 <!-- kept by the other program -->
 <rdf:Description rdf:about=''
  xmlns:dc='http://purl.org/dc/elements/1.1/'
  xmlns:xmp='http://ns.adobe.com/xap/1.0/'
  xmlns:lr='http://ns.adobe.com/lightroom/1.0/'
  xmlns:acme='http://example.com/acme/1.0/'
  xmp:Rating='4' acme:flag='yes'>
  <dc:creator><rdf:Seq><rdf:li>Ann Example</rdf:li></rdf:Seq></dc:creator>
  <dc:title><rdf:Alt><rdf:li xml:lang='x-default'>Beach &amp; sun</rdf:li></rdf:Alt></dc:title>
  <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li><rdf:li>beach</rdf:li></rdf:Bag></dc:subject>
  <lr:hierarchicalSubject><rdf:Bag><rdf:li>Places|Beach</rdf:li></rdf:Bag></lr:hierarchicalSubject>
  <acme:history><acme:step acme:n='1'>crop</acme:step></acme:history>
 </rdf:Description>
</rdf:RDF>
</x:xmpmeta>
<?xpacket end='w'?>"""


@needs_exiftool
def test_new_sidecar_is_read_back_by_exiftool(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": None})
    photo_hash = sha256_of(tmp_path / "photos" / "a.jpg")

    plan, result = save(library)

    by_photo = {change.photo_path.name: change for change in plan}
    assert by_photo["a.jpg"].action == "create"
    # darktable's and digiKam's name: the only one they read.
    assert by_photo["a.jpg"].sidecar_path == tmp_path / "photos" / "a.jpg.xmp"
    assert by_photo["a.jpg"].keywords_before == () and by_photo["a.jpg"].keywords_after == ("dog",)
    # An unlabeled photo gets no sidecar just to say nothing.
    assert by_photo["b.jpg"].action == "unchanged"
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["a.jpg", "a.jpg.xmp", "b.jpg"]
    assert result.written == [tmp_path / "photos" / "a.jpg.xmp"]
    assert exiftool_keywords(tmp_path / "photos" / "a.jpg.xmp") == (["dog"], ["Tagger|dog"])
    assert sha256_of(tmp_path / "photos" / "a.jpg") == photo_hash
    library.close()


@needs_exiftool
def test_merge_keeps_everything_else_and_relabel_replaces_only_taggers_keyword(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    sidecar = tmp_path / "photos" / "a.xmp"
    sidecar.write_text(OTHER_APP_SIDECAR, encoding="utf-8")
    photo_hash = sha256_of(tmp_path / "photos" / "a.jpg")

    save(library)
    assert exiftool_keywords(sidecar) == (["holiday", "beach", "dog"], ["Places|Beach", "Tagger|dog"])

    library.add_class("cow")
    library.set_user_labels([ids["a.jpg"]], "cow")
    plan, result = save(library)
    assert plan[0].action == "update"
    assert plan[0].keywords_before == ("holiday", "beach", "dog")
    assert plan[0].keywords_after == ("holiday", "beach", "cow")
    assert exiftool_keywords(sidecar) == (["holiday", "beach", "cow"], ["Places|Beach", "Tagger|cow"])

    fields = exiftool_fields(sidecar, "-XMP:all")
    assert fields["Rating"] == 4
    assert fields["Title"] == "Beach & sun"
    assert fields["Creator"] == "Ann Example"
    text = sidecar.read_text(encoding="utf-8")
    for survivor in (
        "<!-- kept by the other program -->",
        'acme:flag="yes"',
        '<acme:step acme:n="1">crop</acme:step>',
        'x:xmptk="SomeEditor 3.1"',
        "<?xpacket end='w'?>",
    ):
        assert survivor in text
    assert sha256_of(tmp_path / "photos" / "a.jpg") == photo_hash

    # Saving again changes nothing.
    plan, result = save(library)
    assert plan[0].action == "unchanged" and result.written == []
    library.close()


def test_clearing_a_label_removes_only_taggers_keywords(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    sidecar = tmp_path / "photos" / "a.xmp"
    sidecar.write_text(OTHER_APP_SIDECAR, encoding="utf-8")
    save(library)
    library.set_user_labels([ids["a.jpg"]], None)
    save(library)
    assert keywords_in_file(sidecar).flat == ("holiday", "beach")
    assert keywords_in_file(sidecar).hierarchical == ("Places|Beach",)
    library.close()


def test_a_keyword_another_hierarchy_names_survives_relabel(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    save(library)
    sidecar = tmp_path / "photos" / "a.jpg.xmp"
    text = sidecar.read_text(encoding="utf-8").replace(
        "<rdf:li>Tagger|dog</rdf:li>", "<rdf:li>Tagger|dog</rdf:li><rdf:li>Animals|dog</rdf:li>"
    )
    sidecar.write_text(text, encoding="utf-8")
    library.set_user_labels([ids["a.jpg"]], "elephant")
    save(library)
    assert keywords_in_file(sidecar).flat == ("dog", "elephant")
    assert keywords_in_file(sidecar).hierarchical == ("Animals|dog", "Tagger|elephant")
    library.close()


@pytest.mark.parametrize("existing_name", ["a.jpg.xmp", "a.xmp", "A.JPG.XMP", "a.XMP"])
@pytest.mark.parametrize("naming", list(SidecarNaming))
def test_an_existing_sidecar_of_either_naming_is_updated_not_doubled(tmp_path, existing_name, naming):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    existing = tmp_path / "photos" / existing_name
    existing.write_text(OTHER_APP_SIDECAR, encoding="utf-8")
    plan, result = save(library, naming=naming)
    assert [change.target_path for change in plan] == [existing]
    assert exiftool_keywords(existing) == (["holiday", "beach", "dog"], ["Places|Beach", "Tagger|dog"])
    assert sorted(p.name for p in existing.parent.iterdir()) == sorted(["a.jpg", existing_name])
    library.close()


def test_both_namings_present_the_full_name_is_the_photos_own(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    (tmp_path / "photos" / "a.xmp").write_text(OTHER_APP_SIDECAR, encoding="utf-8")
    (tmp_path / "photos" / "a.jpg.xmp").write_text(OTHER_APP_SIDECAR, encoding="utf-8")
    assert sidecar_path_for(tmp_path / "photos" / "a.jpg") == tmp_path / "photos" / "a.jpg.xmp"
    library.close()


@needs_exiftool
def test_lightroom_naming_is_one_choice_away(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    plan, result = save(library, naming=SidecarNaming.ADOBE)
    assert result.written == [tmp_path / "photos" / "a.xmp"]
    assert exiftool_keywords(tmp_path / "photos" / "a.xmp") == (["dog"], ["Tagger|dog"])
    library.close()


@needs_exiftool
@pytest.mark.parametrize("naming", list(SidecarNaming))
def test_a_jpegs_new_sidecar_never_takes_the_name_adobe_gives_a_raw_beside_it(tmp_path, naming):
    library, ids = library_with_photos(tmp_path, {"IMG_0001.JPG": "dog"})
    photos = tmp_path / "photos"
    (photos / "IMG_0001.CR2").write_bytes(b"II*\x00 raw sensor data stands in here")
    raw_sidecar = photos / ("IMG_0001.CR2.xmp" if naming is SidecarNaming.FULL_NAME else "IMG_0001.xmp")
    plan, result = save(library, naming=naming)
    # The pair is one photo: the JPEG's keywords in its own sidecar, and the RAW's where RAW
    # tools look for it; never the JPEG's in the name Adobe reads as the RAW's.
    assert sorted(result.written) == sorted([photos / "IMG_0001.JPG.xmp", raw_sidecar])
    for sidecar in result.written:
        assert exiftool_keywords(sidecar) == (["dog"], ["Tagger|dog"])
    library.close()


@needs_exiftool
def test_the_raw_sidecar_lightroom_wrote_is_merged_into_not_replaced(tmp_path):
    library, ids = library_with_photos(tmp_path, {"IMG_0001.JPG": "dog"})
    photos = tmp_path / "photos"
    (photos / "IMG_0001.CR2").write_bytes(b"II*\x00 raw sensor data stands in here")
    raw_sidecar = photos / "IMG_0001.xmp"
    raw_sidecar.write_text(OTHER_APP_SIDECAR, encoding="utf-8")
    plan, result = save(library)
    assert sorted(result.written) == sorted([photos / "IMG_0001.JPG.xmp", raw_sidecar])
    assert exiftool_keywords(raw_sidecar) == (["holiday", "beach", "dog"], ["Places|Beach", "Tagger|dog"])
    assert exiftool_fields(raw_sidecar, "-XMP:Rating")["Rating"] == 4
    library.close()


def test_the_command_line_names_new_sidecars_as_asked(tmp_path, capsys):
    from tagger.cli.main import main

    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "elephant"})
    library.close()
    photos = tmp_path / "photos"
    assert main(["--library", str(tmp_path / "library"), "export", "--format", "xmp"]) == 0
    assert (photos / "a.jpg.xmp").is_file() and (photos / "b.jpg.xmp").is_file()
    (photos / "b.jpg.xmp").unlink()
    assert main(["--library", str(tmp_path / "library"), "export", "--format", "xmp", "--sidecar-names", "adobe"]) == 0
    assert "create\t" + str(photos / "b.xmp") in capsys.readouterr().out
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg", "a.jpg.xmp", "b.jpg", "b.xmp"]


def test_photos_that_share_an_existing_sidecar_share_one_change(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "a.png": "dog"})
    (tmp_path / "photos" / "a.xmp").write_text(OTHER_APP_SIDECAR, encoding="utf-8")
    plan, result = save(library)
    assert len(plan) == 1 and len(plan[0].photo_ids) == 2
    assert keywords_in_file(tmp_path / "photos" / "a.xmp").flat == ("holiday", "beach", "dog")
    library.close()


def exiftool_sidecar(photo: Path, *keywords: str) -> Path:
    """A sidecar as exiftool makes it for the user: `photo.jpg.xmp` holding `keywords`."""
    sidecar = photo.with_name(photo.name + ".xmp")
    subprocess.run(
        ["exiftool", "-q", "-o", str(sidecar), *(f"-XMP-dc:Subject={k}" for k in keywords), str(photo)], check=True
    )
    return sidecar


@needs_exiftool
def test_the_users_own_keyword_survives_tagger_relabelling(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    sidecar = exiftool_sidecar(tmp_path / "photos" / "a.jpg", "dog", "puppy")
    save(library)
    assert exiftool_keywords(sidecar) == (["dog", "puppy"], ["Tagger|dog"])

    library.set_user_labels([ids["a.jpg"]], "elephant")
    save(library)
    # "dog" was the user's before Tagger came: it stays; only Tagger's own entries change.
    assert exiftool_keywords(sidecar) == (["dog", "puppy", "elephant"], ["Tagger|elephant"])

    library.set_user_labels([ids["a.jpg"]], None)
    save(library)
    assert exiftool_keywords(sidecar) == (["dog", "puppy"], [])
    library.close()


@needs_exiftool
def test_a_keyword_tagger_added_goes_when_its_label_changes(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "elephant"})
    sidecar = exiftool_sidecar(tmp_path / "photos" / "a.jpg", "puppy")
    save(library)
    library.set_user_labels([ids["a.jpg"]], "dog")
    save(library)
    assert exiftool_keywords(sidecar) == (["puppy", "dog"], ["Tagger|dog"])
    library.close()


@needs_exiftool
def test_no_keyword_is_added_beside_the_same_one_in_another_case(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    sidecar = exiftool_sidecar(tmp_path / "photos" / "a.jpg", "Dog")
    plan, result = save(library)
    assert exiftool_keywords(sidecar) == (["Dog"], ["Tagger|dog"])
    library.set_user_labels([ids["a.jpg"]], "elephant")
    save(library)
    assert exiftool_keywords(sidecar) == (["Dog", "elephant"], ["Tagger|elephant"])
    library.close()


def exiftool_labels(path: Path) -> list[dict]:
    output = subprocess.run(
        ["exiftool", "-j", "-struct", "-XMP-tagger:Labels", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output)[0].get("Labels", [])


@needs_exiftool
def test_provenance_says_whose_keyword_it_is_and_how_sure_the_model_was(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "elephant", "b.jpg": None})
    with library.store.transaction():
        version_id = library.store.insert_model_version(
            mode="zero-shot",
            backbone_id="efficientnet_lite0",
            head_file="head.safetensors",
            backbone_file=None,
            classes=library.class_names(),
            n_labels=0,
            metrics={},
            parent_id=None,
        )
        library.store.write_label(ids["b.jpg"], library.store.class_id("dog"), LabelSource.MODEL, 0.8731, version_id)
    save(library)

    assert exiftool_labels(tmp_path / "photos" / "a.jpg.xmp") == [
        {"Keyword": "elephant", "Source": "user", "KeywordAdded": True}
    ]
    (model_label,) = exiftool_labels(tmp_path / "photos" / "b.jpg.xmp")
    assert model_label["Keyword"] == "dog" and model_label["Source"] == "model"
    assert model_label["Confidence"] == 0.873 and model_label["KeywordAdded"] is True
    assert model_label["ModelVersion"] == version_id and model_label["Model"] == "efficientnet_lite0"

    # The user confirms the guess: the record says so, the keyword stays.
    library.set_user_labels([ids["b.jpg"]], "dog")
    plan, result = save(library)
    assert result.written == [tmp_path / "photos" / "b.jpg.xmp"]
    assert exiftool_labels(tmp_path / "photos" / "b.jpg.xmp") == [
        {"Keyword": "dog", "Source": "user", "KeywordAdded": True}
    ]
    assert exiftool_keywords(tmp_path / "photos" / "b.jpg.xmp") == (["dog"], ["Tagger|dog"])
    library.close()


def test_model_labels_can_be_left_out(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": None})
    with library.store.transaction():
        library.store.write_label(ids["a.jpg"], library.store.class_id("dog"), LabelSource.MODEL, 0.9)
    plan = plan_xmp_changes(library, include_model_labels=False)
    assert plan[0].action == "unchanged"
    plan = plan_xmp_changes(library)
    assert plan[0].keywords_after == ("dog",)
    library.close()


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&lol3;</dc:title>
</rdf:Description></rdf:RDF></x:xmpmeta>"""


def test_sidecars_with_a_dtd_are_refused_and_left_alone(tmp_path):
    with pytest.raises(XmpError):
        parse_xmp(BILLION_LAUGHS)
    with pytest.raises(XmpError):
        parse_xmp(b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>')
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    sidecar = tmp_path / "photos" / "a.xmp"
    sidecar.write_bytes(BILLION_LAUGHS)
    plan, result = save(library)
    assert plan[0].action == "skip" and "DTD" in plan[0].problem
    assert result.skipped and not result.written
    assert sidecar.read_bytes() == BILLION_LAUGHS
    library.close()


def test_malformed_or_foreign_sidecars_are_skipped(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    sidecar = tmp_path / "photos" / "a.xmp"
    for content in (b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>", b"<html><body/></html>", b"&undefined;"):
        sidecar.write_bytes(content)
        plan, result = save(library)
        assert plan[0].action == "skip"
        assert sidecar.read_bytes() == content
    library.close()


def deeply_nested_sidecar(depth: int) -> bytes:
    """Another program's element nested `depth` levels deep (5,000 levels: 70 KB)."""
    nested = "<acme:n>" * depth + "deep" + "</acme:n>" * depth
    return OTHER_APP_SIDECAR.replace("<acme:history>", "<acme:history>" + nested).encode("utf-8")


def test_a_deeply_nested_sidecar_is_merged_and_every_other_sidecar_written(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "elephant"})
    sidecar = tmp_path / "photos" / "a.xmp"
    sidecar.write_bytes(deeply_nested_sidecar(5000))

    plan, result = save(library)

    assert not result.failed and not result.skipped
    assert keywords_in_file(sidecar).flat == ("holiday", "beach", "dog")
    assert keywords_in_file(tmp_path / "photos" / "b.jpg.xmp").flat == ("elephant",)
    written = sidecar.read_text(encoding="utf-8")
    assert written.count("<acme:n>") == written.count("</acme:n>") == 5000
    assert "<acme:n>deep</acme:n>" in written
    library.close()


def test_any_nesting_depth_parses_and_writes_back_unchanged():
    depth = 200_000
    data = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:acme="http://example.com/acme/1.0/" rdf:about="">'
        + "<acme:n>" * depth
        + "deep"
        + "</acme:n>" * depth
        + "</rdf:Description></rdf:RDF></x:xmpmeta>\n"
    ).encode("utf-8")
    assert parse_xmp(data).to_bytes() == data


def test_apply_merges_with_changes_made_after_planning(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    sidecar = tmp_path / "photos" / "a.jpg.xmp"
    plan = plan_xmp_changes(library)
    sidecar.write_text(OTHER_APP_SIDECAR, encoding="utf-8")  # another program, meanwhile
    apply_xmp_changes(plan)
    assert keywords_in_file(sidecar).flat == ("holiday", "beach", "dog")
    library.close()


@needs_exiftool
def test_embedding_writes_jpeg_xmp_and_keeps_pixels_and_other_bytes(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    photo = tmp_path / "photos" / "a.jpg"
    # Give the photo Exif data that must come through untouched.
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-Exif:Artist=Someone", str(photo)], check=True)
    original = photo.read_bytes()
    pixels = np.asarray(Image.open(photo))

    plan, result = save(library, embed=True)
    embedded = [change for change in plan if change.embedded]
    assert len(embedded) == 1 and embedded[0].action in ("create", "update")
    assert photo in result.written and (tmp_path / "photos" / "a.jpg.xmp") in result.written
    assert exiftool_keywords(photo) == (["dog"], ["Tagger|dog"])
    assert exiftool_fields(photo, "-Exif:Artist")["Artist"] == "Someone"
    assert np.array_equal(np.asarray(Image.open(photo)), pixels)
    assert _without_xmp_segment(photo.read_bytes()) == _without_xmp_segment(original)

    # Relabel and embed again: the one packet is replaced, not duplicated.
    library.add_class("cow")
    library.set_user_labels([ids["a.jpg"]], "cow")
    save(library, embed=True)
    assert exiftool_keywords(photo) == (["cow"], ["Tagger|cow"])
    data = photo.read_bytes()
    xmp_segments = [s for s in header_segments(data) if s.payload(data).startswith(XMP_SIGNATURE)]
    assert len(xmp_segments) == 1
    assert np.array_equal(np.asarray(Image.open(photo)), pixels)
    library.close()


def test_without_embed_no_photo_changes_and_other_formats_are_not_embedded(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    png = write_image(tmp_path / "photos" / "b.png", seed=3, format="PNG")
    (png_id,) = add_photos(library, [png])
    library.set_user_labels([png_id], "elephant")
    hashes = {p: sha256_of(p) for p in (tmp_path / "photos").iterdir()}
    save(library)
    assert all(sha256_of(p) == h for p, h in hashes.items())

    plan, result = save(library, embed=True)
    png_embedded = next(c for c in plan if c.embedded and c.photo_path.name == "b.png")
    assert png_embedded.action == "skip" and "JPEG" in png_embedded.problem
    assert sha256_of(png) == hashes[png]
    assert read_xmp_packet((tmp_path / "photos" / "a.jpg").read_bytes()) is not None
    library.close()


def _without_xmp_segment(data: bytes) -> bytes:
    for segment in header_segments(data):
        if segment.payload(data).startswith(XMP_SIGNATURE):
            return data[: segment.start] + data[segment.end :]
    return data


def test_embedding_into_a_multi_picture_jpeg_keeps_every_picture(tmp_path):
    source = Path(__file__).parent / "data" / "awkward" / "python-pillow__sugarshack.mpo"
    photo = tmp_path / "photos" / "stereo.jpg"
    photo.parent.mkdir()
    photo.write_bytes(source.read_bytes())
    library, ids = library_with_photos(tmp_path / "lib", {})
    (photo_id,) = add_photos(library, [photo])
    library.set_user_labels([photo_id], "elephant")
    save(library, embed=True)
    assert keywords_in_file(photo, embedded=True).flat == ("elephant",)
    before, after = Image.open(source), Image.open(photo)
    assert before.n_frames == after.n_frames == 2
    for frame in range(2):
        before.seek(frame)
        after.seek(frame)
        assert np.array_equal(np.asarray(before), np.asarray(after))
    library.close()


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permission bits")
def test_written_files_keep_or_get_ordinary_permissions(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog", "b.jpg": "dog"})
    photo_b = tmp_path / "photos" / "b.jpg"
    photo_b.chmod(0o640)
    existing = tmp_path / "photos" / "b.xmp"
    existing.write_text(OTHER_APP_SIDECAR, encoding="utf-8")
    existing.chmod(0o600)
    save(library, embed=True)
    assert stat.S_IMODE((tmp_path / "photos" / "a.jpg.xmp").stat().st_mode) == 0o666 & ~current_umask()
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600
    assert stat.S_IMODE(photo_b.stat().st_mode) == 0o640
    library.close()


# -- embedding in place, IPTC in step ----------------------------------------------------------


def iptc_photo(tmp_path, label: str | None, *, iptc_keywords: tuple[str, ...], digest: bool = True):
    """A library with one JPEG whose IPTC and XMP hold `iptc_keywords`, as a camera-import
    tool writes them (with the MWG IPTC digest when `digest`)."""
    library, ids = library_with_photos(tmp_path, {"a.jpg": label})
    photo = tmp_path / "photos" / "a.jpg"
    tags = [f"-IPTC:Keywords={k}" for k in iptc_keywords] + [f"-XMP-dc:Subject={k}" for k in iptc_keywords]
    if digest:
        tags.append("-Photoshop:IPTCDigest=new")
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-IPTC:City=Nairobi", *tags, str(photo)], check=True)
    return library, ids, photo


def mwg_view(photo: Path) -> dict:
    fields = exiftool_fields(
        photo,
        "-use",
        "MWG",
        "-MWG:Keywords",
        "-IPTC:Keywords",
        "-XMP-dc:Subject",
        "-Photoshop:IPTCDigest",
        "-File:CurrentIPTCDigest",
        "-IPTC:City",
    )

    def as_list(value: object) -> list[str]:
        return [] if value is None else [str(v) for v in value] if isinstance(value, list) else [str(value)]

    return {
        "mwg": as_list(fields.get("Keywords")),
        "subject": as_list(fields.get("Subject")),
        "digest_current": fields.get("IPTCDigest") == fields.get("CurrentIPTCDigest"),
        "city": fields.get("City"),
        "has_digest": "IPTCDigest" in fields,
    }


@needs_exiftool
def test_embedding_keeps_iptc_keywords_in_step_with_xmp(tmp_path):
    library, ids, photo = iptc_photo(tmp_path, "dog", iptc_keywords=("puppy",))
    save(library, embed=True)
    library.set_user_labels([ids["a.jpg"]], "elephant")
    save(library, embed=True)

    iptc = exiftool_fields(photo, "-IPTC:Keywords")["Keywords"]
    view = mwg_view(photo)
    assert view["subject"] == ["puppy", "elephant"]
    assert sorted([iptc] if isinstance(iptc, str) else iptc) == ["elephant", "puppy"]
    assert sorted(view["mwg"]) == ["elephant", "puppy"]
    assert view["has_digest"] and view["digest_current"]  # MWG readers see IPTC and XMP agree
    assert view["city"] == "Nairobi"  # the rest of the IPTC is kept
    library.close()


@needs_exiftool
def test_a_users_iptc_keyword_stays_and_a_jpeg_without_iptc_gets_none(tmp_path):
    library, ids, photo = iptc_photo(tmp_path, "dog", iptc_keywords=("dog", "puppy"), digest=False)
    save(library, embed=True)
    library.set_user_labels([ids["a.jpg"]], "elephant")
    save(library, embed=True)
    assert sorted(exiftool_fields(photo, "-IPTC:Keywords")["Keywords"]) == ["dog", "elephant", "puppy"]
    assert not mwg_view(photo)["has_digest"]  # none added where there was none
    library.close()

    plain, plain_ids = library_with_photos(tmp_path / "plain", {"b.jpg": "dog"})
    save(plain, embed=True)
    assert exiftool_fields(tmp_path / "plain" / "photos" / "b.jpg", "-IPTC:all") == {
        "SourceFile": str(tmp_path / "plain" / "photos" / "b.jpg")
    }
    plain.close()


@needs_exiftool
@pytest.mark.parametrize(
    ("label", "character_set", "written"),
    [
        ("éléphant", "UTF8", True),
        ("éléphant", None, True),  # Latin-1, IPTC's default, holds it
        ("象", None, False),  # Latin-1 cannot
        ("象" * 22, "UTF8", False),  # 66 bytes: more than IPTC's 64
    ],
)
def test_iptc_keywords_in_its_character_set_or_a_reason_not_to_embed(tmp_path, label, character_set, written):
    library, ids, photo = iptc_photo(tmp_path, None, iptc_keywords=("puppy",))
    if character_set:
        subprocess.run(
            ["exiftool", "-q", "-overwrite_original", f"-IPTC:CodedCharacterSet={character_set}", str(photo)],
            check=True,
        )
    library.add_class(label)
    library.set_user_labels([ids["a.jpg"]], label)
    before = photo.read_bytes()
    plan, result = save(library, embed=True)
    (embedded,) = [change for change in plan if change.embedded]
    if written:
        charset = ["-charset", "iptc=UTF8"] if character_set else ["-charset", "iptc=Latin"]
        keywords = exiftool_fields(photo, *charset, "-IPTC:Keywords")["Keywords"]
        assert keywords == ["puppy", label]
    else:
        assert embedded.action == "skip" and ("64 bytes" in embedded.problem or "Latin-1" in embedded.problem)
        assert photo.read_bytes() == before
    library.close()


@needs_exiftool
def test_embedding_edits_the_photo_in_place(tmp_path):
    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    photo = tmp_path / "photos" / "a.jpg"
    other_name = tmp_path / "elsewhere.jpg"
    os.link(photo, other_name)
    os.setxattr(photo, "user.xdg.comment", b"from the file manager")
    os.utime(photo, ns=(1_600_000_000_000_000_000, 1_500_000_000_123_456_789))
    inode = photo.stat().st_ino

    plan, result = save(library, embed=True)

    assert photo in result.written
    assert photo.stat().st_ino == inode
    assert exiftool_keywords(other_name) == (["dog"], ["Tagger|dog"])  # the hard link sees the change
    assert os.getxattr(photo, "user.xdg.comment") == b"from the file manager"
    assert photo.stat().st_mtime_ns == 1_500_000_000_123_456_789
    assert not [p.name for p in photo.parent.iterdir() if p.name.startswith(".")]

    library.set_user_labels([ids["a.jpg"]], "elephant")
    apply_xmp_changes(plan_xmp_changes(library, embed=True), keep_photo_mtime=False)
    assert exiftool_keywords(photo) == (["elephant"], ["Tagger|elephant"])
    assert photo.stat().st_mtime_ns > 1_500_000_000_123_456_789 and photo.stat().st_ino == inode
    library.close()


def test_an_interrupted_in_place_edit_leaves_its_result_and_blocks_only_that_photo(tmp_path, monkeypatch):
    import tagger.common.in_place_files

    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    photo = tmp_path / "photos" / "a.jpg"

    real_write_at = tagger.common.in_place_files._write_at
    writes = []

    def power_cut_in_the_copy(descriptor, data, offset):
        writes.append(offset)
        if len(writes) == 1:  # the complete result, beside the photo
            return real_write_at(descriptor, data, offset)
        real_write_at(descriptor, data[: len(data) // 2], offset)  # the photo: torn half way
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(tagger.common.in_place_files, "_write_at", power_cut_in_the_copy)
        result = apply_xmp_changes(plan_xmp_changes(library, embed=True))
    assert [str(path) for path, _why in result.failed] == [str(photo)]
    (leftover,) = photo.parent.glob(".a.jpg.*.tagger-embed")
    assert keywords_in_file(leftover, embedded=True).flat == ("dog",)

    plan = plan_xmp_changes(library, embed=True)
    (embedded,) = [change for change in plan if change.embedded]
    assert embedded.action == "skip" and leftover.name in embedded.problem
    assert next(c for c in plan if not c.embedded).action == "unchanged"  # the sidecar was written

    # The user keeps the complete result: the next export finds nothing to do and tidies up.
    photo.write_bytes(leftover.read_bytes())
    plan, result = save(library, embed=True)
    assert not result.failed and not result.skipped and not leftover.exists()
    library.close()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_pipe_planted_under_an_embedding_leftovers_name_neither_blocks_nor_counts(tmp_path):
    import threading

    library, ids = library_with_photos(tmp_path, {"a.jpg": "dog"})
    planted = tmp_path / "photos" / ".a.jpg.x1y2.tagger-embed"
    os.mkfifo(planted)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(save(library, embed=True)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader before failing, so the test run can end
        with open(planted, "wb"):
            pass
        pytest.fail("the export blocked on a pipe named like a leftover")
    plan, result = outcome[0]
    assert tmp_path / "photos" / "a.jpg" in result.written
    assert stat.S_ISFIFO(os.lstat(planted).st_mode)  # not Tagger's: left as it is
    library.close()
