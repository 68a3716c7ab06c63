"""The one image loader: real awkward files, generated edge cases, reduced decoding, refusals."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image

from tagger.errors import UnreadableImage
from tagger.images import loader as images
from tagger.images.loader import ImageInfo, check_complete, load_array, load_rgb, probe, sniff_format
from tests.helpers.image_bombs import (
    gif_with_a_huge_screen,
    jpeg_declaring,
    lossless_webp,
    sixteen_bit_png,
    write_bombs,
)

RED = (220, 30, 30)
BLUE = (30, 30, 220)


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b.convert("RGB"), dtype=np.int16)).mean())


def is_close(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(p - e) <= tolerance for p, e in zip(pixel, expected))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: the shape of a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def spy_on_decoded_size(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record the size of each decoded picture before the final resize."""
    sizes: list[tuple[int, int]] = []
    original = images._fit_within

    def recording(image: Image.Image, max_side: int | None) -> Image.Image:
        sizes.append(image.size)
        return original(image, max_side)

    monkeypatch.setattr(images, "_fit_within", recording)
    return sizes


# -- committed awkward files ------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "python-pillow__hopper_orientation_6.jpg",
        "python-pillow__hopper_orientation_8.jpg",
        "python-pillow__hopper_orientation_6.webp",
    ],
)
def test_exif_rotated_files_come_out_upright(awkward_path, name):
    upright = Image.open(awkward_path("python-pillow__hopper.png"))
    loaded = load_rgb(awkward_path(name))
    assert mean_difference(loaded, upright) < 12  # unrotated they differ by ~75


@pytest.mark.parametrize(
    "name",
    [
        "python-pillow__hopper.gif",
        "python-pillow__hopper.bmp",
        "python-pillow__hopper.tif",
        "python-pillow__hopper.webp",
        "python-pillow__hopper_gray.jpg",
    ],
)
def test_other_formats_of_the_same_picture_agree(awkward_path, name):
    reference = Image.open(awkward_path("python-pillow__hopper.png"))
    loaded = load_rgb(awkward_path(name))
    assert loaded.mode == "RGB"
    # The gray JPEG lost its colour, hence the looser bound.
    assert mean_difference(loaded, reference) < (25 if "gray" in name else 6)


def test_cmyk_jpeg_from_adobe_keeps_its_colours(awkward_path):
    loaded = load_rgb(awkward_path("python-pillow__pil_sample_cmyk.jpg"))
    # The sample is red text on black: red in the top-left corner, black in the bottom right.
    assert is_close(loaded.getpixel((0, 0)), (255, 0, 0))
    assert is_close(loaded.getpixel((99, 99)), (0, 0, 0))


@pytest.mark.parametrize("name", ["python-pillow__transparent.png", "python-pillow__transparent.webp"])
def test_transparent_areas_become_white(awkward_path, name):
    loaded = load_rgb(awkward_path(name))
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert np.asarray(loaded).mean() > 150  # mostly background: white, not black


def test_mpo_gives_its_first_frame(awkward_path):
    path = awkward_path("python-pillow__sugarshack.mpo")
    with Image.open(path) as stereo:
        first = stereo.convert("RGB")
        stereo.seek(1)
        second = stereo.convert("RGB")
    loaded = load_rgb(path)
    assert mean_difference(loaded, first) < 1
    assert mean_difference(loaded, second) > 20
    assert probe(path).format == "MPO"


def test_jpeg_2000_loads_and_is_decoded_at_reduced_resolution(awkward_path, monkeypatch):
    path = awkward_path("python-pillow__balloon.jpf")
    assert probe(path) == ImageInfo(2717, 3701, "JPEG2000", None)
    decoded = spy_on_decoded_size(monkeypatch)
    loaded = load_rgb(path, max_side=300)
    assert max(loaded.size) == 300
    assert max(decoded[0]) <= 3701 // 8 + 1


def test_truncated_jpeg_is_refused_clearly(awkward_path):
    path = awkward_path("python-pillow__truncated_jpeg.jpg")
    assert probe(path).format == "JPEG"  # the header is intact...
    with pytest.raises(UnreadableImage, match=r"^truncated or corrupt JPEG$"):
        load_rgb(path)  # ...the pixels are not
    with pytest.raises(UnreadableImage, match="truncated"):
        check_complete(path, "JPEG")


def test_every_committed_image_probes_and_loads(awkward_path):
    folder = awkward_path("python-pillow__hopper.png").parent
    for path in sorted(folder.iterdir()):
        if path.suffix == ".md" or "truncated" in path.name:
            continue
        info = probe(path)
        image = load_rgb(path, max_side=96)
        assert image.mode == "RGB" and max(image.size) <= 96
        check_complete(path, info.format)


# -- orientation -------------------------------------------------------------------------

CORNER_AFTER_UPRIGHTING = {
    1: "top left",
    2: "top right",
    3: "bottom right",
    4: "bottom left",
    5: "top left",
    6: "top right",
    7: "bottom right",
    8: "bottom left",
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation(make_image, orientation):
    path = make_image("turned.jpg", size=(80, 40), color=BLUE, top_left_color=RED, orientation=orientation, quality=95)
    sideways = orientation >= 5
    expected_size = (40, 80) if sideways else (80, 40)
    assert (probe(path).width, probe(path).height) == expected_size

    loaded = load_rgb(path)
    assert loaded.size == expected_size
    width, height = loaded.size
    corners = {
        "top left": (3, 3),
        "top right": (width - 4, 3),
        "bottom left": (3, height - 4),
        "bottom right": (width - 4, height - 4),
    }
    red_corners = [name for name, xy in corners.items() if is_close(loaded.getpixel(xy), RED)]
    assert red_corners == [CORNER_AFTER_UPRIGHTING[orientation]]


def test_orientation_is_applied_after_shrinking_too(make_image):
    path = make_image("portrait.jpg", size=(400, 300), orientation=6)
    assert load_rgb(path, max_side=100).size == (75, 100)


# -- colour modes ---------------------------------------------------------------------------


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    path = tmp_path / "deep.png"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode.startswith("I;16")

    row = np.asarray(load_rgb(path))[0, :, 0]
    assert np.abs(row.astype(int) - [0, 64, 128, 255]).max() <= 1


def test_sixteen_bit_tiff_is_scaled(tmp_path):
    levels = np.full((8, 8), 30000, dtype=np.uint16)
    path = tmp_path / "deep.tif"
    Image.fromarray(levels).save(path)
    assert abs(int(np.asarray(load_rgb(path))[0, 0, 0]) - 117) <= 1


def test_float_pixels_in_unit_range_are_scaled(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)).save(path)
    assert abs(int(np.asarray(load_rgb(path))[0, 0, 0]) - 128) <= 1


def test_cmyk_written_without_adobe_inversion_keeps_colours(make_image):
    for name in ("cyan.tif", "cyan.jpg"):
        path = make_image(name, mode="CMYK", color=(255, 0, 0, 0))
        assert is_close(load_rgb(path).getpixel((5, 5)), (0, 255, 255)), name


def test_palette_gif_with_transparent_index_is_on_white(tmp_path):
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(0, (0, 0, 8, 16))
    path = tmp_path / "sticker.gif"
    image.save(path, transparency=0)
    loaded = load_rgb(path)
    assert loaded.getpixel((2, 2)) == (255, 255, 255)
    assert loaded.getpixel((12, 2)) == (255, 0, 0)


def test_gray_with_alpha_is_on_white(make_image):
    path = make_image("ghost.png", mode="LA", color=(0, 0))
    assert load_rgb(path).getpixel((1, 1)) == (255, 255, 255)


def test_half_transparent_pixels_blend_with_white(make_image):
    path = make_image("veil.png", mode="RGBA", color=(0, 0, 0, 128))
    assert is_close(load_rgb(path).getpixel((1, 1)), (127, 127, 127), tolerance=2)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), colour) for colour in (RED, BLUE)]
    path = tmp_path / "blink.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert is_close(load_rgb(path).getpixel((10, 10)), RED)


def test_bilevel_image_becomes_rgb(make_image):
    path = make_image("fax.png", mode="1", color=1)
    assert load_rgb(path).getpixel((0, 0)) == (255, 255, 255)


# -- modern formats ---------------------------------------------------------------------------


def test_heic_from_a_phone(make_image):
    path = make_image("phone.heic", size=(64, 32), color=RED, orientation=6, datetime_original="2021:05:06 07:08:09")
    info = probe(path)
    assert (info.width, info.height, info.format) == (32, 64, "HEIF")
    assert info.taken_at == datetime(2021, 5, 6, 7, 8, 9).timestamp()
    loaded = load_rgb(path)
    assert loaded.size == (32, 64)  # rotated once, not twice
    assert is_close(loaded.getpixel((16, 32)), RED)


def test_heic_with_misleading_extension(make_image):
    path = make_image("phone.jpg", format="HEIF", color=BLUE)
    assert probe(path).format == "HEIF"
    assert is_close(load_rgb(path).getpixel((5, 5)), BLUE)


def test_avif(make_image):
    path = make_image("modern.avif", size=(64, 32), color=BLUE, orientation=6)
    info = probe(path)
    assert (info.width, info.height, info.format) == (32, 64, "AVIF")
    loaded = load_rgb(path, max_side=32)
    assert loaded.size == (16, 32)
    assert is_close(loaded.getpixel((8, 16)), BLUE)


def test_webp_and_bmp_and_tiff_read_by_content(make_image):
    for name, format in (("a.webp", "WEBP"), ("b.bmp", "BMP"), ("c.tiff", "TIFF"), ("d.jp2", "JPEG2000")):
        path = make_image(name, color=RED)
        assert probe(path).format == format
        assert is_close(load_rgb(path).getpixel((3, 3)), RED)


def test_format_comes_from_content_not_name(make_image):
    path = make_image("really-a-png.jpg", format="PNG", color=BLUE)
    assert probe(path).format == "PNG"
    assert load_rgb(path).getpixel((0, 0)) == BLUE


# -- reduced decoding and resizing ------------------------------------------------------------


def test_big_jpeg_is_decoded_at_reduced_size(make_image, monkeypatch):
    path = make_image("twelve-megapixels.jpg", size=(4000, 3000), color=RED, quality=70)
    decoded = spy_on_decoded_size(monkeypatch)

    loaded = load_rgb(path, max_side=224)

    assert loaded.size == (224, 168)
    # draft() let libjpeg decode at 1/8 scale: 500 x 375, not 4000 x 3000.
    assert decoded == [(500, 375)]


def test_full_size_without_max_side(make_image, monkeypatch):
    path = make_image("big.jpg", size=(1600, 1200))
    decoded = spy_on_decoded_size(monkeypatch)
    assert load_rgb(path).size == (1600, 1200)
    assert decoded == [(1600, 1200)]


def test_small_images_are_not_enlarged(make_image):
    assert load_rgb(make_image("small.png", size=(30, 20)), max_side=224).size == (30, 20)


def test_resize_keeps_aspect_ratio(make_image):
    assert load_rgb(make_image("wide.png", size=(1000, 250)), max_side=200).size == (200, 50)


def test_max_side_must_be_positive(make_image):
    with pytest.raises(ValueError):
        load_rgb(make_image("x.png"), max_side=0)


def test_load_array_is_a_writable_uint8_array(make_image):
    array = load_array(make_image("x.png", size=(30, 20), color=RED), max_side=15)
    assert array.shape == (10, 15, 3) and array.dtype == np.uint8
    array[0, 0] = 0  # the model pipeline may normalise in place


# -- refusals ---------------------------------------------------------------------------------


def test_decompression_bomb_is_refused_with_its_size(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(50000, 50000))
    expected = r"^image too large \(50000 x 50000 pixels; limit 200 MP\)$"
    with pytest.raises(UnreadableImage, match=expected):
        probe(path)
    with pytest.raises(UnreadableImage, match=expected):
        load_rgb(path, max_side=224)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_image_just_over_the_limit_is_refused(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_declaring(15000, 15000))
    with pytest.raises(UnreadableImage, match=r"15000 x 15000 pixels"):
        probe(path)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_bomb_warning_raised_as_error_is_still_a_refusal(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_declaring(15000, 15000))
    with pytest.raises(UnreadableImage, match=r"^image too large"):
        load_rgb(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "file is empty (0 bytes)"),
        (b"Dear diary, today I photographed an elephant.\n", "not an image (text file)"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "not an image (PDF document)"),
        (b"PK\x03\x04\x14\x00\x00\x00", "not an image (ZIP archive or office document)"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "not an image (video file)"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "unsupported format (SVG drawing)"),
        (bytes(range(256)), "unsupported format (not a known image type)"),
    ],
)
def test_non_images_named_jpg_get_a_plain_reason(tmp_path, content, reason):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    for read in (probe, load_rgb):
        with pytest.raises(UnreadableImage) as caught:
            read(path)
        assert str(caught.value) == reason


def test_damaged_header_of_a_known_format(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(UnreadableImage, match=r"^truncated or corrupt PNG$"):
        probe(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UnreadableImage, match=r"^file not found$"):
        load_rgb(tmp_path / "nowhere.jpg")
    with pytest.raises(UnreadableImage, match=r"^a folder, not a file$"):
        probe(tmp_path)


def test_permission_denied(make_image, monkeypatch):
    path = make_image("secret.jpg")
    real_os_open = os.open

    def refusing_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_os_open(file, *args, **kwargs)

    # Tests run as root, for whom chmod 000 changes nothing: refuse at os.open() instead,
    # which tagger.common.safe_files opens photos with.
    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(UnreadableImage, match=r"^permission denied$"):
        load_rgb(path)


# -- metadata and checks -----------------------------------------------------------------------


def test_taken_at_from_exif_in_local_time(make_image):
    path = make_image("dated.jpg", datetime_original="2019:12:31 23:59:58")
    assert probe(path).taken_at == datetime(2019, 12, 31, 23, 59, 58).timestamp()


def test_taken_at_honours_recorded_offset_and_subseconds(tmp_path):
    exif = Image.Exif()
    details = exif.get_ifd(ExifTags.IFD.Exif)
    details[ExifTags.Base.DateTimeOriginal] = "2020:02:29 12:00:00"
    details[ExifTags.Base.OffsetTimeOriginal] = "+02:00"
    details[ExifTags.Base.SubsecTimeOriginal] = "25"
    path = tmp_path / "zoned.jpg"
    Image.new("RGB", (8, 8)).save(path, exif=exif.tobytes())
    expected = datetime(2020, 2, 29, 12, tzinfo=timezone(timedelta(hours=2))).timestamp() + 0.25
    assert probe(path).taken_at == pytest.approx(expected)


def test_nonsense_dates_are_ignored(make_image):
    assert probe(make_image("zero.jpg", datetime_original="0000:00:00 00:00:00")).taken_at is None
    assert probe(make_image("blank.jpg", datetime_original="    :  :     :  :  ")).taken_at is None
    assert probe(make_image("none.jpg")).taken_at is None


def test_garbage_exif_segment_does_not_cost_the_photo(make_image):
    path = make_image("odd.jpg", size=(40, 30), color=RED)
    data = path.read_bytes()
    garbage = b"Exif\x00\x00" + bytes(range(200))
    segment = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    path.write_bytes(data[:2] + segment + data[2:])

    assert (probe(path).width, probe(path).height) == (40, 30)
    assert is_close(load_rgb(path).getpixel((5, 5)), RED)


def test_check_complete_accepts_data_after_the_jpeg(make_image):
    path = make_image("motion.jpg", size=(64, 48))
    with open(path, "ab") as file:
        file.write(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 500)  # a phone's motion-photo video
    check_complete(path, "JPEG")


@pytest.mark.parametrize(("name", "format"), [("cut.jpg", "JPEG"), ("cut.png", "PNG"), ("cut.gif", "GIF")])
def test_check_complete_refuses_files_cut_in_the_middle(tmp_path, name, format):
    noise = np.random.default_rng(7).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    path = tmp_path / name
    image = Image.fromarray(noise)
    (image.quantize() if format == "GIF" else image).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    info = probe(path)
    with pytest.raises(UnreadableImage, match=f"truncated or corrupt {format}"):
        check_complete(path, info.format)


def test_check_complete_is_silent_for_whole_files(make_image):
    for name in ("a.jpg", "b.png", "c.gif", "d.webp", "e.tif"):
        path = make_image(name)
        check_complete(path, probe(path).format)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG"),
        (b"GIF89a\x01\x00", "GIF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WEBP"),
        (b"II*\x00\x08\x00\x00\x00", "TIFF"),
        (b"MM\x00*\x00\x00\x00\x08", "TIFF"),
        (b"BM" + b"\x00" * 12 + b"\x28\x00\x00\x00", "BMP"),
        (b"BMW owners club newsletter, issue 4, spring", None),
        (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heicmiaf", "HEIF"),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heic", "HEIF"),
        (b"\x00\x00\x00\x20ftypavif\x00\x00\x00\x00avifmif1miafMA1B", "AVIF"),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avif", "AVIF"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", None),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00", "JPEG2000"),
        (b"\xff\x4f\xff\x51\x00\x2f", "JPEG2000"),
        (b"", None),
    ],
)
def test_sniff_format(head, expected):
    assert sniff_format(head) == expected


def test_loading_never_touches_the_file(make_image):
    path = make_image("keep.jpg", orientation=6)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    load_rgb(path, max_side=16)
    probe(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_loaded_image_is_independent_of_the_file(make_image):
    path = make_image("gone.png", color=RED)
    loaded = load_rgb(path)
    Path(path).unlink()
    assert loaded.copy().getpixel((0, 0)) == RED


# -- bombs under the pixel limit ----------------------------------------------------------------
#
# Files of a few bytes to a few hundred KB declaring 14000 x 14000 pixels (196 MP, under the
# 200 MP limit). Before the decode budget, tagging them took 5.3 GB (the 16-bit PNG, as float64),
# 3 GB (the WebP), 784 MB (the GIF); the JPEG was tagged as a flat grey photo.

_BOMB_REFUSALS = {
    "sixteen-bit.png": r"^image too large to decode safely \(14000 x 14000 pixels need about \d[\d.]* GB; "
    r"limit 256 MB for a file of 372 KB\)$",
    "lossless.webp": r"^image too large to decode safely \(14000 x 14000 pixels need about \d[\d.]* GB; "
    r"limit 256 MB for a file of 32 bytes\)$",
    "huge-screen.gif": r"^image too large to decode safely \(14000 x 14000 pixels need about \d[\d.]* GB; "
    r"limit 256 MB for a file of 37 bytes\)$",
    "liar.jpg": r"^truncated or corrupt JPEG \(632 bytes cannot hold 14000 x 14000 pixels\)$",
}

# Decodes the file given every way the app does, in a fresh interpreter, and reports its
# peak resident memory before and after. VmHWM, not ru_maxrss: a child forked from pytest
# inherits pytest's ru_maxrss across exec, while VmHWM starts afresh with the new program.
_DECODE_AND_MEASURE = """
import json, sys
from tagger.images import loader as images

def peak_bytes():
    with open("/proc/self/status") as status:
        kilobytes = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    return int(kilobytes) * 1024

path = sys.argv[1]
before = peak_bytes()
outcomes = []
for read in (lambda: images.check_complete(path, images.probe(path).format),
             lambda: images.load_array_for_crop(path, 256),
             lambda: images.load_rgb(path, max_side=256),
             lambda: images.load_rgb(path)):
    try:
        read()
        outcomes.append("decoded")
    except images.UnreadableImage as error:
        outcomes.append(str(error))
print(json.dumps({"before": before, "peak": peak_bytes(), "outcomes": outcomes}))
"""


def decode_in_a_child(path: Path) -> dict:
    if not Path("/proc/self/status").is_file():
        pytest.skip("measures memory through Linux's /proc")
    done = subprocess.run(
        [sys.executable, "-c", _DECODE_AND_MEASURE, str(path)], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    return write_bombs(tmp_path_factory.mktemp("bombs"))


@pytest.mark.parametrize("name", sorted(_BOMB_REFUSALS))
def test_a_bomb_under_the_pixel_limit_is_refused_with_a_reason(bombs, name):
    path = bombs[name]
    reason = _BOMB_REFUSALS[name]
    with pytest.raises(UnreadableImage, match=reason):
        probe(path)  # so the importer marks it unreadable
    for read in (
        lambda: load_rgb(path, max_side=256),
        lambda: images.load_array_for_crop(path, 256),
        lambda: load_rgb(path),
    ):
        with pytest.raises(UnreadableImage, match=reason):
            read()


@pytest.mark.parametrize("name", sorted(_BOMB_REFUSALS))
def test_a_bomb_takes_a_few_megabytes_not_gigabytes(bombs, name):
    measured = decode_in_a_child(bombs[name])
    assert all(outcome != "decoded" for outcome in measured["outcomes"]), measured
    assert measured["peak"] - measured["before"] < 50 * 2**20, measured


# Just under the budget at their declared sizes: these decode, and the memory they take must
# stay within what the budget promised (the estimate is an upper bound, not a guess).
_JUST_UNDER_THE_BUDGET = {
    "sixteen-bit.png": lambda: sixteen_bit_png(5300),
    "lossless.webp": lambda: lossless_webp(3950),
    "huge-screen.gif": lambda: gif_with_a_huge_screen(5600),
}


@pytest.mark.parametrize("name", sorted(_JUST_UNDER_THE_BUDGET))
def test_a_big_picture_within_the_budget_decodes_within_it(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(_JUST_UNDER_THE_BUDGET[name]())
    measured = decode_in_a_child(path)
    assert measured["outcomes"] == ["decoded"] * 4, measured
    assert measured["peak"] - measured["before"] <= images.DECODE_BUDGET_BYTES, measured


def test_a_png_too_small_for_its_declared_size_is_marked_at_once(tmp_path):
    path = tmp_path / "liar.png"
    path.write_bytes(png_declaring(4000, 4000))
    reason = rf"^truncated or corrupt PNG \({path.stat().st_size} bytes cannot hold 4000 x 4000 pixels\)$"
    with pytest.raises(UnreadableImage, match=reason):
        probe(path)


def test_an_arithmetic_coded_jpeg_is_not_held_to_huffman_sizes(tmp_path):
    """Arithmetic coding can store a flat picture in almost nothing: no minimum size applies."""
    data = bytearray(jpeg_declaring(2000))
    frame = data.index(b"\xff\xc0")
    data[frame + 1] = 0xC9  # "extended sequential DCT, arithmetic coding"
    path = tmp_path / "arithmetic.jpg"
    path.write_bytes(bytes(data))
    assert probe(path) == ImageInfo(2000, 2000, "JPEG", None)


def test_a_real_photo_at_full_size_is_within_the_budget(make_image):
    path = make_image("big.jpg", size=(6000, 4000))
    assert load_rgb(path).size == (6000, 4000)


def test_decodes_at_once_share_one_budget():
    """Several decode threads: together they never hold more than the budget, and one bigger
    than the whole budget (allowed for a big file) runs alone."""
    pool = images._DecodeMemory(100)
    running: list[int] = []
    seen: list[list[int]] = []  # what was running each time a decode started
    lock = threading.Lock()

    def decode(cost: int) -> None:
        with pool.reserved(cost):
            with lock:
                running.append(cost)
                seen.append(sorted(running))
            time.sleep(0.02)
            with lock:
                running.remove(cost)

    threads = [threading.Thread(target=decode, args=(cost,)) for cost in (60, 60, 30, 150, 40, 60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert len(seen) == 6 and [150] in seen
    assert all(together == [150] or sum(together) <= 100 for together in seen), seen
