"""Fast checks of the packaging files; the real build is packaging/build.sh (minutes, not CI)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"


def test_spec_is_valid_python_and_its_inputs_exist():
    spec = (PACKAGING / "tagger.spec").read_text(encoding="utf-8")
    compile(spec, "tagger.spec", "exec")
    for name in ("tagger.svg", "tagger.png"):
        assert (ROOT / "tagger" / "resources" / name).is_file()
    from tagger.inference.networks import NETWORKS
    from tagger.inference.preprocessing import weights_path

    for name in NETWORKS:
        assert weights_path(name).is_file()
    assert "weights_path(name)" in spec and 'f"{module}/models"' in spec and '"tagger/resources"' in spec


def test_desktop_entry_names_the_program_and_an_existing_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive in desktop entries
    entry.read(PACKAGING / "tagger.desktop", encoding="utf-8")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application"
    assert section["Exec"].split() == ["tagger-gui", "%F"]  # files opened with Tagger are imported
    assert "image/jpeg" in section["MimeType"].split(";")
    assert any((ROOT / "tagger" / "resources" / f"{section['Icon']}{suffix}").is_file() for suffix in (".svg", ".png"))
    assert section["Categories"].endswith(";")
    if shutil.which("desktop-file-validate"):
        subprocess.run(["desktop-file-validate", str(PACKAGING / "tagger.desktop")], check=True)


def test_build_script_is_executable_shell():
    script = PACKAGING / "build.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.skipif(sys.platform == "win32", reason="PYTHONPATH handling differs; the check is the same")
def test_launcher_reaches_the_entry_point():
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(PACKAGING / "launcher.py"), "--version"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tagger ")


def test_the_wheel_carries_the_icons_and_both_programs(tmp_path):
    # Built from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "tagger", source / "tagger", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("tagger-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {"tagger/resources/tagger.svg", "tagger/resources/tagger.png"} <= names
        assert (
            archive.read("tagger/resources/tagger.png") == (ROOT / "tagger" / "resources" / "tagger.png").read_bytes()
        )
        (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        scripts = configparser.ConfigParser()
        scripts.read_string(archive.read(entry_points).decode("utf-8"))
    assert scripts["console_scripts"]["tagger"] == "tagger.__main__:main"
    assert scripts["gui_scripts"]["tagger-gui"] == "tagger.__main__:gui_main"


def test_the_app_icon_is_not_empty(qapp):
    from tagger.gui.app import app_icon

    icon = app_icon()
    assert not icon.isNull() and not icon.pixmap(64, 64).isNull()


@pytest.mark.skipif(sys.platform == "win32", reason="PYTHONPATH handling differs; the check is the same")
def test_tagger_gui_is_always_the_app_even_given_files(tmp_path):
    # Under the name tagger-gui the frozen launcher hands every argument to the app, as the
    # wheel's gui-script does: `tagger-gui photo.jpg` (a launcher's %F) must not reach the CLI.
    launcher = tmp_path / "tagger-gui.py"
    launcher.write_text((PACKAGING / "launcher.py").read_text(encoding="utf-8"), encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, str(launcher), "--version"], capture_output=True, text=True, env=environment, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("Tagger ")  # the app's parser; the CLI says "tagger"
    result = subprocess.run(
        [sys.executable, "-c", "from tagger.__main__ import gui_main; gui_main()", "--version"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert result.stdout.strip().startswith("Tagger "), result.stderr
