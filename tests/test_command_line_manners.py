"""The command line behaves as command-line tools are expected to: options where people type
them, progress that fits the terminal, data on stdout apart from messages, and an exit
status that says whether anything was done."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from tagger.cli.console import ProgressBar
from tagger.cli.main import main
from tagger.domain import Progress
from tests.helpers.builders import write_image
from tests.helpers.reliability import REPO_ROOT, cli_environment

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run(capsys, *argv: str | os.PathLike) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "command",
    [["status"], ["classes", "list"], ["classes", "add", "cow"], ["models", "list"], ["export", "--format", "csv"]],
)
def test_library_is_taken_after_the_command_too(tmp_path, capsys, command):
    library = tmp_path / "library"
    assert run(capsys, "--library", library, "import", write_image(tmp_path / "a.jpg"))[0] == 0
    code, out, err = run(capsys, *command, "--library", library)
    assert code == 0, err
    assert "There is no Tagger library" not in err
    if command == ["status"]:
        assert f"Library: {library}" in out


def test_the_library_after_the_command_wins_over_the_one_before(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    run(capsys, "--library", first, "import", write_image(tmp_path / "a.jpg"))
    run(capsys, "--library", second, "import", write_image(tmp_path / "b.jpg", seed=1))
    code, out, _err = run(capsys, "--library", first, "status", "--library", second)
    assert code == 0 and f"Library: {second}" in out


def test_import_lists_files_on_stdout_and_its_summary_on_stderr(tmp_path, capsys):
    photos = tmp_path / "photos"
    write_image(photos / "a.jpg")
    (photos / "letter.jpg").write_text("not a photo")
    code, out, err = run(capsys, "--library", tmp_path / "library", "import", photos)
    assert code == 0
    assert out.splitlines() == [f"unreadable\t{photos / 'letter.jpg'}\tnot an image (text file)"]
    assert "1 added, 0 skipped as duplicates, 1 unreadable" in err


def test_an_import_of_only_unsupported_files_fails(tmp_path, capsys):
    raw = tmp_path / "IMG_1.xyz"
    raw.write_text("nothing Tagger can read")
    text = tmp_path / "notes.jpg"
    text.write_text("a text file with a photo's name")
    code, out, err = run(capsys, "--library", tmp_path / "library", "import", raw, text)
    assert code == 1
    assert "0 added" in err
    # Importing a photo already in the library is not a failure.
    photo = write_image(tmp_path / "a.jpg")
    assert run(capsys, "--library", tmp_path / "library", "import", photo)[0] == 0
    assert run(capsys, "--library", tmp_path / "library", "import", photo)[0] == 0


def test_progress_without_a_total_shows_a_count_not_a_fraction():
    log = io.StringIO()
    bar = ProgressBar("Importing", log)
    bar(Progress(120, 0, "Looking for photos: 120 found"))
    bar(Progress(120, 120, "Read 120 of 120 files"))
    lines = log.getvalue().splitlines()
    assert lines[0] == "Importing: 120  Looking for photos: 120 found"
    assert lines[1].startswith("Importing: 120/120 (100%)")
    assert "/0" not in log.getvalue()


def _run_in_terminal(argv: list[str], columns: int) -> tuple[int, str]:
    """Run `argv` with stderr on a pseudo-terminal `columns` wide; its exit code and what
    the terminal received."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    process = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=cli_environment(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal
    )
    os.close(terminal)
    received = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the command is done
                break
            if not chunk:
                break
            received += chunk
        elif process.poll() is not None:
            break
    os.close(controller)
    return process.wait(timeout=30), received.decode("utf-8", "replace")


def test_the_progress_bar_fits_a_narrow_terminal(tmp_path):
    photos = tmp_path / "photos"
    for index in range(40):
        write_image(photos / f"photo-{index:03d}-with-a-rather-long-name.jpg", seed=index)
    argv = [sys.executable, "-m", "tagger", "--library", str(tmp_path / "library"), "import", str(photos)]
    code, screen = _run_in_terminal(argv, columns=60)
    assert code == 0, screen
    drawn = [_ANSI_ESCAPE.sub("", line) for line in re.split(r"[\r\n]", screen)]
    assert any("Importing" in line for line in drawn), screen
    assert all(len(line) <= 60 for line in drawn), [line for line in drawn if len(line) > 60]
    assert not any(re.search(r"\b\d+/0\b", line) for line in drawn), screen
