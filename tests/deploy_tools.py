"""Shared set-up of the offline deployment tests (tests/unit/test_deploy_*.py): paths, and the command-line
tools they run (promtool, docker-compose, hadolint, check-jsonschema), skipped with the command that installs
them when missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DATASOURCE_UID = "ttrv-prometheus"
DESIGN = ROOT / "docs" / "design.md"  # the contracts: wire, streams, metrics


def tool(name: str, install: str) -> str:
    """The path of a command-line tool: next to this interpreter (the venv) or on PATH, else a skip."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed; scripts/bootstrap.sh installs it ({install})")
    return found


def run(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def promtool() -> str:
    return tool("promtool", "apt-get install prometheus")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def flags(argv: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}


def flag_value(argv: list[str], flag: str) -> str:
    return str(argv[argv.index(flag) + 1])
