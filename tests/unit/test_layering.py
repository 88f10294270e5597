"""Forbidden import edges, read with ``ast``: unwind -> profiler or exporters, exporters -> profiler."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> top-level packages it must not import (DESIGN.md, "Data flow").
FORBIDDEN = {
    "unwind": {"profiler", "exporters"},
    "exporters": {"profiler"},
}


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module imported by ``source`` (the module ``module``), relative ones resolved.

    Imports anywhere count (function bodies, ``if TYPE_CHECKING:`` blocks), as does ``importlib`` use
    with a literal name.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = ".".join(p for p in (base, node.module or "") if p)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def violations(root: Path) -> list[str]:
    """``path: imports X`` for each forbidden edge under ``root``."""
    out: list[str] = []
    for package, banned in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            is_package = rel.name == "__init__"
            module = ".".join(rel.parent.parts if is_package else rel.parts)
            names = sorted(imported_modules(path.read_text(), module, is_package))
            out.extend(f"{path.relative_to(root)}: imports {n}" for n in names if n.split(".")[0] in banned)
    return out


def test_packages_exist() -> None:
    for package in FORBIDDEN:
        assert list((ROOT / package).rglob("*.py")), f"no Python files in {package}/"


def test_no_forbidden_imports() -> None:
    assert violations(ROOT) == []


@pytest.mark.parametrize(
    ("module", "source", "bad"),
    [
        ("unwind.maps", "import profiler.cli\n", "profiler.cli"),
        ("unwind.maps", "from exporters import folded\n", "exporters"),
        ("unwind.maps", "def f():\n    from profiler import session\n", "profiler"),
        ("unwind.sub.x", "from ...profiler import bpf\n", "profiler"),
        ("exporters.svg", "import importlib\nimportlib.import_module('profiler.cli')\n", "profiler.cli"),
    ],
)
def test_checker_sees_forbidden_imports(module: str, source: str, bad: str) -> None:
    assert bad in imported_modules(source, module, is_package=False)


def test_checker_reports_a_planted_violation(tmp_path: Path) -> None:
    (tmp_path / "unwind").mkdir()
    (tmp_path / "exporters").mkdir()
    (tmp_path / "unwind" / "__init__.py").write_text("from . import frame\n")
    (tmp_path / "unwind" / "frame.py").write_text("from __future__ import annotations\nimport numpy\n")
    (tmp_path / "exporters" / "svg.py").write_text(
        "from unwind.frame import Frame\nfrom profiler import cli\n"
    )
    assert violations(tmp_path) == [
        "exporters/svg.py: imports profiler",
        "exporters/svg.py: imports profiler.cli",
    ]
