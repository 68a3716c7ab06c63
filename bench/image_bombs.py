"""Memory and time to read small files that declare huge pictures ("image bombs").

Each file is decoded in a fresh interpreter the four ways the app reads photos: the import's
check (probe + check_complete), tagging (load_array_for_crop), a thumbnail (load_rgb at 256)
and the full-size preview (load_rgb). Per file and way: what came of it (decoded, or the
reason it was refused), the seconds it took and the process's peak resident memory (VmHWM,
which starts afresh with each program, unlike ru_maxrss, inherited across exec), beside the
peak of the same interpreter before decoding. The bombs are those of tests/helpers/image_bombs.py,
each declaring 14000 x 14000 pixels (196 MP, under the 200 MP pixel limit); the "budget"
files are the largest of each kind that still fit the decode budget.

Prints a table, then one JSON line. Run: .venv/bin/python -m bench.image_bombs (half a minute)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.image_bombs import (
    gif_with_a_huge_screen,
    jpeg_declaring,
    lossless_webp,
    sixteen_bit_png,
)

REPO = Path(__file__).resolve().parents[1]


FILES = {
    "16-bit PNG 14000^2": ("bomb.png", sixteen_bit_png),
    "lossless WebP 14000^2": ("bomb.webp", lossless_webp),
    "GIF, 14000^2 screen": ("bomb.gif", gif_with_a_huge_screen),
    "JPEG declaring 14000^2": ("bomb.jpg", jpeg_declaring),
    "16-bit PNG 5300^2 (budget)": ("budget.png", lambda: sixteen_bit_png(5300)),
    "lossless WebP 3950^2 (budget)": ("budget.webp", lambda: lossless_webp(3950)),
    "GIF, 5600^2 screen (budget)": ("budget.gif", lambda: gif_with_a_huge_screen(5600)),
}

READS = {
    "import": "images.check_complete(path, images.probe(path).format)",
    "tagging": "images.load_array_for_crop(path, 256)",
    "thumbnail": "images.load_rgb(path, max_side=256)",
    "preview": "images.load_rgb(path)",
}

_CHILD = """
import json, sys, time
from tagger.images import loader as images

def peak_mb():
    with open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("VmHWM:"))) // 1024

path = sys.argv[1]
before = peak_mb()
started = time.monotonic()
try:
    {read}
    outcome = "decoded"
except images.UnreadableImage as error:
    outcome = str(error)
print(json.dumps({{"outcome": outcome, "seconds": round(time.monotonic() - started, 2),
                  "before_mb": before, "peak_mb": peak_mb()}}))
"""


def measure(path: Path, read: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(read=read), str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {
            "outcome": f"crashed: {done.stderr.strip().splitlines()[-1:]}",
            "seconds": None,
            "before_mb": None,
            "peak_mb": None,
        }
    return json.loads(done.stdout)


def main() -> None:
    folder = REPO / "bench" / "out" / "image-bombs"
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    print(f"{'file':31} {'size':>9}  {'read':9} {'peak MB':>7} {'before':>6} {'s':>6}  outcome")
    for label, (name, make) in FILES.items():
        path = folder / name
        path.write_bytes(make())
        for read_name, read in READS.items():
            measured = measure(path, read)
            results.append({"file": label, "bytes": path.stat().st_size, "read": read_name, **measured})
            print(
                f"{label:31} {path.stat().st_size:>9}  {read_name:9} {measured['peak_mb']!s:>7} "
                f"{measured['before_mb']!s:>6} {measured['seconds']!s:>6}  {measured['outcome'][:70]}"
            )
    print(json.dumps({"benchmark": "image_bombs", "results": results}))


if __name__ == "__main__":
    main()
