"""The Kubernetes manifests (deploy/k8s), checked offline: every overlay renders with `kubectl kustomize`,
every object validates against the Kubernetes 1.32 schemas (kubernetes-validate, strict) or, for custom
resources, against the documented fields (tests/schemas), and the NetworkPolicies allow exactly the paths
the design intends. No cluster is needed or contacted."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from adapter.settings import WorkerSettings
from server.settings import GatewaySettings
from stack.settings import StackSettings
from stack.vllm import vllm_argv
from tests.deploy_tools import COMPOSE, ROOT, flag_value, flags, load_yaml, run, tool

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("gpu", "cpu", "inference-gateway")
KUBERNETES_VERSION = "1.32"  # the kubectl on these machines; the manifests use no newer API
SCHEMAS = ROOT / "tests" / "schemas"
CUSTOM = {
    "PodMonitor": "podmonitor.json",
    "InferencePool": "inferencepool.json",
    "HTTPRoute": "httproute.json",
}


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = tool("kubectl", "the kubectl client (it bundles kustomize)")
    result = run([kubectl, "kustomize", str(K8S / "overlays" / overlay)])
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == kind}


def container(overlay: str, deployment: str) -> dict[str, Any]:
    spec = objects(overlay, "Deployment")[deployment]["spec"]["template"]["spec"]
    return dict(spec["containers"][0])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates(overlay: str) -> None:
    for doc in rendered(overlay):
        if doc["kind"] in CUSTOM:
            schema = json.loads((SCHEMAS / CUSTOM[doc["kind"]]).read_text())
            jsonschema.validate(doc, schema)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_broken_object_is_caught() -> None:
    deployment = json.loads(json.dumps(objects("gpu", "Deployment")["gateway"]))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    pool = json.loads(json.dumps(objects("inference-gateway", "InferencePool")["ttrv-vllm"]))
    del pool["spec"]["endpointPickerRef"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(pool, json.loads((SCHEMAS / "inferencepool.json").read_text()))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_committed_and_every_reference_names_the_operators_secret(overlay: str) -> None:
    assert not objects(overlay, "Secret")
    text = json.dumps(rendered(overlay))
    refs = {ref["name"] for ref in _find(rendered(overlay), "secretKeyRef")}
    assert refs == {"ttrv-secrets"}
    assert "password" not in text.replace("redis-password", "").replace("REDIS_PASSWORD", "").lower()


def _find(node: Any, key: str) -> list[Any]:
    if isinstance(node, dict):
        return ([node[key]] if key in node else []) + [x for v in node.values() for x in _find(v, key)]
    if isinstance(node, list | tuple):
        return [x for v in node for x in _find(v, key)]
    return []


# ---- network paths ----------------------------------------------------------------------------------------

# (from, to, port): what the design allows inside the namespace, and from Prometheus (namespace monitoring).
INTENDED = {
    ("anyone", "gateway", 8000),
    ("gateway", "vllm", 8000),
    ("worker", "vllm", 8000),
    ("prometheus", "vllm", 8000),
    ("gateway", "redis", 6379),
    ("worker", "redis", 6379),
    ("prometheus", "worker", 9101),
}
PODS = {"gateway": 8000, "vllm": 8000, "redis": 6379, "worker": 9101}
SOURCES = {
    "anyone": ({"app.kubernetes.io/name": "browser"}, "elsewhere"),
    "gateway": ({"app.kubernetes.io/name": "gateway"}, "ttrv"),
    "worker": ({"app.kubernetes.io/name": "worker"}, "ttrv"),
    "vllm": ({"app.kubernetes.io/name": "vllm"}, "ttrv"),
    "redis": ({"app.kubernetes.io/name": "redis"}, "ttrv"),
    "prometheus": ({"app.kubernetes.io/name": "prometheus"}, "monitoring"),
}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_allows(peer: dict[str, Any], labels: dict[str, str], namespace: str) -> bool:
    if "namespaceSelector" in peer:
        ns_ok = _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    else:
        ns_ok = namespace == "ttrv"  # a podSelector alone selects pods of the policy's own namespace
    return ns_ok and _selects(peer.get("podSelector", {}), labels)


def allowed(overlay: str) -> set[tuple[str, str, int]]:
    """Every (source, destination, port) some NetworkPolicy admits; with a policy selecting every pod, any
    path no rule admits is denied (Kubernetes' semantics for Ingress policies)."""
    policies = list(objects(overlay, "NetworkPolicy").values())
    paths = set()
    for dest, port in PODS.items():
        dest_labels = {"app.kubernetes.io/name": dest}
        for policy in policies:
            if not _selects(policy["spec"]["podSelector"], dest_labels):
                continue
            for rule in policy["spec"].get("ingress", []):
                ports = {p["port"] for p in rule.get("ports", [])}
                if ports and port not in ports:
                    continue
                for source, (labels, namespace) in SOURCES.items():
                    if "from" not in rule or any(_peer_allows(p, labels, namespace) for p in rule["from"]):
                        paths.add((source, dest, port))
    return {p for p in paths if p[0] != p[1]}


@pytest.mark.parametrize("overlay", ["gpu", "cpu"])
def test_network_policies_allow_exactly_the_intended_paths(overlay: str) -> None:
    policies = objects(overlay, "NetworkPolicy")
    assert policies["default-deny-ingress"]["spec"]["podSelector"] == {}, "everything else is denied"
    opened = allowed(overlay)
    # "anyone" reaching the gateway stands for every source: the API is public on its port.
    expected = INTENDED | {(s, "gateway", 8000) for s in SOURCES if s != "gateway"}
    assert opened == expected, (
        f"unintended: {sorted(opened - expected)}; missing: {sorted(expected - opened)}"
    )


# ---- agreement with the code and the other deployments ---------------------------------------------------


CPU_SIZED = {"--block-size", "--max-num-seqs", "--max-num-batched-tokens"}  # stack/vllm.py says why


@pytest.mark.parametrize(
    ("overlay", "not_needed"), [("gpu", {"--model", "--enforce-eager", *CPU_SIZED}), ("cpu", set())]
)
def test_vllm_gets_the_flags_of_the_local_stack(overlay: str, not_needed: set[str]) -> None:
    vllm = container(overlay, "vllm")
    argv = [*vllm.get("command", []), *vllm["args"]]
    local_argv = vllm_argv(Path("/model"), 8100, StackSettings())
    local = flags(local_argv)
    assert not sorted(local - not_needed - flags(argv)), "lacks flags of stack/vllm.py"
    same_value = {"--max-lora-rank", *(CPU_SIZED if overlay == "cpu" else set())}
    for flag in same_value:
        assert flag_value(argv, flag) == flag_value(local_argv, flag), flag
    assert flag_value(argv, "--served-model-name") == "base"
    env = {e["name"]: e.get("value") for e in vllm["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "1"
    assert objects(overlay, "Deployment")["vllm"]["spec"]["replicas"] == 1, "one replica until the promoter"


@pytest.mark.parametrize("overlay", ["gpu", "cpu"])
def test_environment_names_are_settings_fields(overlay: str) -> None:
    config = objects(overlay, "ConfigMap")["ttrv-config"]["data"]
    for deployment, settings in (("gateway", GatewaySettings), ("worker", WorkerSettings)):
        names = {e["name"] for e in container(overlay, deployment)["env"]} | set(config)
        fields = {f"TTRV_{n.upper()}" for n in settings.model_fields}
        unknown = {n for n in names if n.startswith("TTRV_")} - fields
        assert not unknown, f"{deployment}: {sorted(unknown)} are no settings"


@pytest.mark.parametrize("overlay", ["gpu", "cpu"])
def test_worker_and_vllm_share_adapters_at_the_same_path(overlay: str) -> None:
    def mount(deployment: str) -> dict[str, Any]:
        (found,) = [m for m in container(overlay, deployment)["volumeMounts"] if m["name"] == "adapters"]
        return dict(found)

    assert mount("worker")["mountPath"] == mount("vllm")["mountPath"]
    assert mount("vllm").get("readOnly") is True
    env = {e["name"]: e.get("value") for e in container(overlay, "worker")["env"]}
    assert env["TTRV_ADAPTER_DIR"] == mount("worker")["mountPath"]


def test_images_are_pinned_and_vllm_is_the_composes() -> None:
    compose_vllm = load_yaml(COMPOSE)["services"]["vllm"]["image"]
    assert container("gpu", "vllm")["image"] == compose_vllm
    for overlay in ("gpu", "cpu"):
        for doc in rendered(overlay):
            for c in [c for group in _find(doc, "containers") + _find(doc, "initContainers") for c in group]:
                name, _, tag = c["image"].rpartition(":")
                assert name, f"{c['image']} has no tag"
                assert tag[0].isdigit() or tag.startswith("v"), f"{c['image']} is not pinned"


def test_gateway_readiness_survives_a_redis_blip_and_it_scales() -> None:
    gateway = container("gpu", "gateway")
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/health", "/ready would pull every gateway out"
    assert objects("gpu", "HorizontalPodAutoscaler")["gateway"]["spec"]["minReplicas"] >= 2
    assert objects("gpu", "PodDisruptionBudget")["gateway"]["spec"]["minAvailable"] >= 1
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True


def test_dashboards_and_rules_are_the_checked_in_files() -> None:
    maps = objects("gpu", "ConfigMap")
    dashboards = maps["ttrv-grafana-dashboards"]["data"]
    for name in ("serving.json", "adaptation.json"):
        assert dashboards[name] == (ROOT / "deploy" / "grafana" / "dashboards" / name).read_text()
    rules = maps["ttrv-prometheus-rules"]["data"]["alerts.yml"]
    assert rules == (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
