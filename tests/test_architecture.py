"""The layering rules of the code base, checked where import-linter cannot see."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE_MODULES = sorted(
    f"tagger.{path.stem}" for path in (ROOT / "tagger").glob("*.py") if path.stem not in {"__init__", "__main__"}
)
# The model, inference and training modules: the only ones that may import torch.
TORCH_MODULES = {
    "tagger.model", "tagger.engine", "tagger.tagging", "tagger.runner", "tagger.folder_eval",
    "tagger.training", "tagger.deep_training", "tagger.tuned_backbone", "tagger.explain",
    "tagger.explain_head", "tagger.explain_probe", "tagger.model_export", "tagger.cli",
    "tagger.explain_cli", "tagger.training_process", "tagger.cli_exchange", "tagger.cli_training", "tagger.onnx_export_process",
    "tagger.handover_engine", "tagger.engine_process", "tagger.explain_process",
    "tagger.model_export_process", "tagger.machine_cache",
}


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["name"]: c for c in config["tool"]["importlinter"]["contracts"]}


def test_every_core_module_is_bound_by_the_qt_contract():
    listed = set(_contracts()["Only tagger.gui speaks Qt"]["source_modules"])
    assert set(CORE_MODULES) <= listed


def test_every_core_module_is_either_torch_free_or_a_named_torch_module():
    torch_free = set(_contracts()["Only the model, inference and training modules import torch"]["source_modules"])
    unaccounted = set(CORE_MODULES) - torch_free - TORCH_MODULES
    assert not unaccounted, f"add these to the torch-free contract or to TORCH_MODULES: {sorted(unaccounted)}"


def test_torch_modules_import_torch_only_inside_functions_where_they_must_start_fast():
    # The CLI, the runner and the engine are on the path of `tagger tag`, which must show its
    # first result before `import torch` alone would have finished.
    for name in ("cli", "cli_exchange", "cli_training", "runner", "engine", "handover_engine", "engine_process",
                 "explain_process", "model_export_process", "tagging", "folder_eval", "explain_cli"):
        tree = ast.parse((ROOT / "tagger" / f"{name}.py").read_text())
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert not (module or "").startswith(("torch", "timm")), f"{name}.py imports {module} at top level"


def test_status_command_does_not_import_torch_or_qt(tmp_path):
    code = (
        "import sys; from tagger.cli import main; main(['--library', sys.argv[1], 'classes', 'list']); "
        "print(sorted(m for m in ('torch', 'PySide6', 'timm') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lib")], capture_output=True,
                            text=True, check=True).stdout
    assert output.strip().splitlines()[-1] == "[]"


def test_no_star_imports():
    for path in (ROOT / "tagger").rglob("*.py"):
        tree = ast.parse(path.read_text())
        stars = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)]
        assert not stars, f"{path} uses a star import"
