"""Imports run one way (docs/design.md, "Layers"): `core` imports no other project package; the gateway
(`server`) and the worker (`adapter`) import `core` and never each other; the SDK (`clients`) imports no
project package. `stack` (the launcher and CLI) and `bench` may import any of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("core", "server", "adapter", "clients", "stack", "bench")
ALLOWED = {
    "core": set(),
    "server": {"core"},
    "adapter": {"core"},
    "clients": set(),
    "stack": {"core", "server", "adapter", "clients"},
    "bench": {"core", "server", "adapter", "clients", "stack"},
}


def project_imports(path: Path) -> set[str]:
    """The project packages a module imports, at any depth of the file (lazy imports in functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES}
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_layers(package: str) -> None:
    wrong = {
        str(f.relative_to(ROOT)): sorted(project_imports(f) - ALLOWED[package] - {package})
        for f in sorted((ROOT / package).rglob("*.py"))
    }
    assert not {f: w for f, w in wrong.items() if w}, f"imports against the layers in {package}/"


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from server.engine import X\n    import adapter.policy\n")
    assert project_imports(module) == {"server", "adapter"}
