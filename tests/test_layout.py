"""The house rules of DESIGN.md: which package may import which, and what a plain import loads."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> the project packages it may import (besides itself)
ALLOWED = {
    "threshnet": set(),
    "space": {"threshnet"},
    "studies": {"threshnet", "space"},
    "search": {"threshnet", "space", "studies"},
}

# file -> project modules it may import besides its package's (none: studies only reads)
EXCEPTIONS: dict[str, set[str]] = {}


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_run_one_way(package: str) -> None:
    offences = []
    for path in sorted((ROOT / package).rglob("*.py")):
        excepted = EXCEPTIONS.get(str(path.relative_to(ROOT)), set())
        for module in _imported_modules(path) - excepted:
            top = module.split(".")[0]
            if top in ALLOWED and top != package and top not in ALLOWED[package]:
                offences.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offences == []


def test_model_modules_import_nothing_from_training() -> None:
    model_modules = [
        path
        for path in sorted((ROOT / "threshnet").glob("*.py"))
        if path.name != "train.py"  # the `python -m threshnet.train` entry point
    ]
    assert len(model_modules) >= 8
    offences = [
        f"{path.name} imports {module}"
        for path in model_modules
        for module in _imported_modules(path)
        if module.startswith("threshnet.training")
    ]
    assert offences == []


def _loaded_after(statement: str) -> list[str]:
    """Module names loaded by a fresh interpreter after running ``statement``."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(result.stdout.splitlines()[-1])


def test_the_model_library_loads_no_training_search_or_data_code() -> None:
    loaded = _loaded_after("import threshnet; threshnet.build_model")
    assert "threshnet.config" in loaded and "threshnet.model" in loaded
    unwanted_packages = {"space", "search", "studies", "optuna", "ray", "PIL"}
    unwanted = [
        module
        for module in loaded
        if module.split(".")[0] in unwanted_packages or module.startswith("threshnet.training")
    ]
    assert unwanted == []


def test_onnx_is_imported_only_when_used() -> None:
    loaded = _loaded_after("import threshnet.steady_latency, threshnet.onnx_export")
    assert [m for m in loaded if m.split(".")[0] in ("onnx", "onnxruntime", "onnxscript")] == []


def test_loading_a_study_never_imports_ray() -> None:
    loaded = _loaded_after(
        "import studies.load, studies.schema, studies.pareto, studies.report, studies.fidelity"
    )
    assert "studies.schema" in loaded and "studies.fidelity" in loaded
    assert [m for m in loaded if m.split(".")[0] in ("ray", "search")] == []


# search's rooms, bottom floor first: a room may import the rooms below it, never above
SEARCH_ROOMS = ("methods", "setup", "worker", "tasks", "driver")


def test_search_rooms_import_downwards_only() -> None:
    rooms = sorted(
        path.name
        for path in (ROOT / "search").iterdir()
        if path.is_dir() and (path / "__init__.py").exists()
    )
    assert rooms == sorted(SEARCH_ROOMS)
    commands = sorted(path.stem for path in (ROOT / "search").glob("*.py"))
    assert commands == ["__init__", "console", "fidelity", "run"]
    offences = []
    for floor, room in enumerate(SEARCH_ROOMS):
        for path in sorted((ROOT / "search" / room).glob("*.py")):
            for module in _imported_modules(path):
                parts = module.split(".")
                if parts[0] != "search":
                    continue
                if len(parts) < 2 or parts[1] not in SEARCH_ROOMS[: floor + 1]:
                    offences.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offences == []
