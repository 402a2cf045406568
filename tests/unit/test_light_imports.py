"""The gateway and the client import where torch, vLLM, PEFT and transformers cannot (DESIGN.md)."""

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


def test_server_and_clients_import_without_heavy_packages() -> None:
    result = run(
        """
        import clients, server
        for pkg in (server, clients):
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
        from clients.cli import app
        out = CliRunner().invoke(app, ["--help"])
        assert out.exit_code == 0, out.output
        print(out.output)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "model" in result.stdout
    assert "data" in result.stdout
