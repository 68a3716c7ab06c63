"""The layering rules of the code base, checked where import-linter cannot see.

The rules themselves are import-linter contracts in pyproject.toml (`make test` runs them): the
layers over tagger's packages, no cycles between siblings, Qt only in tagger.gui, torch only in
the modules that run a network. These tests keep those contracts complete as packages are added,
and check what the contracts cannot: where in a module torch is imported, and what a command
actually loads."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAGGER = ROOT / "tagger"
# The packages on the path of `tagger tag`, which must show its first result before
# `import torch` alone would have finished: their modules import torch inside functions only...
FAST_PATH_PACKAGES = ("cli", "tagging", "inference", "cluster")
# ...except the network itself, its fine-tuned checkpoints and the GPU's JPEG decoding, which
# exist to run torch (in the GPU engine's process, never imported by the app's).
NETWORK_MODULES = {
    "tagger.inference.backbone",
    "tagger.inference.tuned_backbone",
    "tagger.inference.gpu_jpeg",
    "tagger.inference.gpu_crops",
}


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["name"]: c for c in config["tool"]["importlinter"]["contracts"]}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    imported = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            imported.append(node.module or "")
    return imported


def test_every_package_but_the_gui_is_bound_by_the_qt_contract():
    children = {f"tagger.{p.stem}" for p in TAGGER.glob("*.py")} | {
        f"tagger.{p.parent.name}" for p in TAGGER.glob("*/__init__.py")
    }
    bound = set(_contracts()["Qt only in tagger.gui"]["source_modules"])
    assert bound == children - {"tagger.__init__", "tagger.__main__", "tagger.gui"}


def test_modules_on_the_fast_path_import_torch_only_inside_functions():
    for package in FAST_PATH_PACKAGES:
        for path in sorted((TAGGER / package).rglob("*.py")):
            if _module_name(path) in NETWORK_MODULES:
                continue
            for module in _top_level_imports(path):
                assert not module.startswith(("torch", "timm")), f"{path} imports {module} at top level"


def test_the_parents_of_child_processes_import_torch_only_inside_functions():
    # The app imports these to start their children; torch is for the children alone.
    for path in sorted(TAGGER.rglob("*process*.py")):
        for module in _top_level_imports(path):
            assert not module.startswith(("torch", "timm")), f"{path} imports {module} at top level"


def test_packages_run_no_code_when_imported():
    # Importing tagger.explain.overlay must not pull in torch through tagger/explain/__init__.py,
    # nor tagger.gui.widgets anything the GUI does not need yet.
    for path in sorted(TAGGER.rglob("__init__.py")):
        body = ast.parse(path.read_text()).body
        statements = [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        if path.parent == TAGGER:
            continue  # __version__ and APP_NAME
        assert not statements, f"{path} holds code; put it in a module of the package"


def test_status_command_does_not_import_torch_or_qt(tmp_path):
    code = (
        "import sys; from tagger.cli.main import main; main(['--library', sys.argv[1], 'classes', 'list']); "
        "print(sorted(m for m in ('torch', 'PySide6', 'timm') if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "lib")], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip().splitlines()[-1] == "[]"


def test_no_star_imports():
    for path in TAGGER.rglob("*.py"):
        tree = ast.parse(path.read_text())
        stars = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)]
        assert not stars, f"{path} uses a star import"


def test_every_exception_tagger_raises_is_a_tagger_error():
    # tagger/errors.py holds them all, under one base; elsewhere a class may only extend those.
    import builtins

    for path in TAGGER.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    builtin = getattr(builtins, base.id, None) if isinstance(base, ast.Name) else None
                    assert not (isinstance(builtin, type) and issubclass(builtin, BaseException)), (
                        f"{path}: {node.name} extends {base.id}; define it in tagger/errors.py under TaggerError"
                    )


def test_sql_runs_only_in_the_store():
    allowed = {TAGGER / "library" / "store.py", TAGGER / "library" / "schema.py"}
    for path in TAGGER.rglob("*.py"):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in {"execute", "executemany", "executescript"}, (
                    f"{path}:{node.lineno} runs SQL; add a query to tagger/library/store.py"
                )
