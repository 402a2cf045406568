"""The gateway, the shared core and the SDK import where torch, vLLM, PEFT and transformers cannot
(docs/design.md); the core needs no web framework, and the SDK nothing beyond httpx and pydantic."""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = ("torch", "vllm", "peft", "transformers")

BLOCKER = textwrap.dedent(
    f"""
    import importlib, importlib.abc, pkgutil, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {HEAVY!r}:
                raise ImportError("blocked heavy import: " + name)
            return None

    sys.meta_path.insert(0, Block())
    """
)


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True
    )


def test_core_server_and_clients_import_without_heavy_packages() -> None:
    result = run(
        """
        import clients, core, server
        for pkg in (core, server, clients):
            for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                importlib.import_module(info.name)
        print("imported")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "imported" in result.stdout


def test_the_blocker_really_blocks() -> None:
    result = run("import torch")
    assert result.returncode != 0
    assert "blocked heavy import: torch" in result.stderr


def test_cli_help_runs_without_heavy_packages() -> None:
    result = run(
        """
        from typer.testing import CliRunner
        from stack.cli import app
        out = CliRunner().invoke(app, ["--help"])
        assert out.exit_code == 0, out.output
        print(out.output)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "model" in result.stdout
    assert "data" in result.stdout


def test_the_sdk_loads_no_project_package_and_no_server_library() -> None:
    result = run(
        """
        import clients
        for info in pkgutil.walk_packages(clients.__path__, "clients."):
            importlib.import_module(info.name)
        loaded = {name.split(".")[0] for name in sys.modules}
        print(sorted(loaded & {"core", "server", "adapter", "stack", "fastapi", "starlette", "redis", "PIL"}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_core_loads_no_web_framework() -> None:
    result = run(
        """
        import core
        for info in pkgutil.walk_packages(core.__path__, "core."):
            importlib.import_module(info.name)
        print(sorted({name.split(".")[0] for name in sys.modules} & {"fastapi", "starlette", "uvicorn"}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
