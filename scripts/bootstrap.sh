#!/usr/bin/env bash
# Idempotent set-up of everything the local stack and the tests need, on a fresh Debian machine:
#   - Debian packages: redis-server, prometheus (+ promtool), docker-compose (validates docker-compose.yml
#     offline: no Docker engine is needed or started);
#   - the project virtualenv .venv from requirements/lock-cpu.txt (exact versions, no resolver), with
#     torchvision made importable on CPU (PyPI ships only CUDA builds of it; see below);
#   - vLLM's CPU LoRA ops replaced by ours (scripts/vllm_cpu_lora_ops.py: grouped by adapter slot, and
#     right for base-model tokens batched with adapter tokens; see below);
#   - the project itself, editable.
# Re-running it is cheap: each step checks first and does nothing when already done.
set -euo pipefail
SELF=$(realpath "${BASH_SOURCE[0]}")
cd "$(dirname "$SELF")/.."

step() { printf '\033[1;34m==>\033[0m \033[1m%s\033[0m\n' "$*"; }
die() { printf '\033[1;31mbootstrap failed:\033[0m %s\n' "$*" >&2; exit 1; }

PYTHON=${TTRV_PYTHON:-python3}
VENV=.venv
LOCK=requirements/lock-cpu.txt

# --- 1. Python ---------------------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH: install Python 3.11 (or set TTRV_PYTHON to one)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  die "$("$PYTHON" -V) found, but the lock file is for Python 3.11: set TTRV_PYTHON to a python3.11"

# --- 2. Debian packages ------------------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if ((${#missing[@]})); then
  step "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) == 0 ]]; then sudo=(); elif sudo -n true 2>/dev/null; then sudo=(sudo); else
    die "missing ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}"
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" ||
    { "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; } ||
    die "apt-get could not install ${missing[*]}"
fi

# --- 3. virtualenv -----------------------------------------------------------------------------------
# Each stamp is a hash of what determines that layer; a change to any of them redoes the layer. This layer's:
# the lock and this section's own lines, so that editing another step does not rebuild the venv.
section() { sed -n "/^# --- $1\. /,/^# --- /p" "$SELF"; }
deps_stamp=$({ cat "$LOCK"; section 3; } | sha256sum | cut -c1-16)
if [[ -f $VENV/.stamp-deps && $(cat "$VENV/.stamp-deps") == "$deps_stamp" ]]; then
  step "virtualenv $VENV is up to date"
else
  step "creating virtualenv $VENV from $LOCK (a few minutes the first time)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip==26.3
  # --no-deps: the lock is complete, so pip need not resolve (and cannot pull a CUDA torch by accident).
  "$VENV/bin/python" -m pip install --no-deps --progress-bar on -r "$LOCK" ||
    die "pip could not install $LOCK (is PyPI reachable? torch==2.13.0+cpu comes from the local wheel folder)"

  # torchvision must import for vLLM's and transformers' Qwen2-VL processors, but PyPI's wheel registers
  # fake kernels for compiled ops the CPU torch does not have, and fails on import. Make those two
  # registrations conditional; only torchvision's compiled ops (nms, roi_align) are lost, which nothing
  # here uses. The pattern matches only the original lines, so this is idempotent.
  tv=$("$VENV/bin/python" -c "import importlib.util as u; print(u.find_spec('torchvision').submodule_search_locations[0])")
  sed -i 's/^@torch\.library\.register_fake(/@(torch.library.register_fake if torchvision.extension._has_ops() else (lambda *a, **k: (lambda f: f)))(/' \
    "$tv/_meta_registrations.py"
  "$VENV/bin/python" -c "import torchvision, transformers; assert transformers.utils.is_torchvision_available()" ||
    die "torchvision still does not import after the CPU fix; see $tv/_meta_registrations.py"
  echo "$deps_stamp" >"$VENV/.stamp-deps"
fi

# --- 4. vLLM's CPU LoRA ops ----------------------------------------------------------------------------
# vLLM's CPU LoRA kernels (torch ops, vllm/lora/ops/torch_ops/lora_ops.py) have two faults that
# scripts/vllm_cpu_lora_ops.py, installed over that file, fixes:
# - each token's adapter weights are picked by indexing the slots with its slot index, and -1 (no adapter:
#   a base-model request) indexes the *last* slot in Python; once an adapter sits there, base-model requests
#   batched with adapter requests are computed with its weights (measured: 107 of 240 greedy answers
#   changed while adapters were loaded and unloaded beside them; tests/integration/test_adapters_in_flight.py);
# - that gather copies a full LoRA matrix per token for every LoRA layer at every step: a rollout round
#   with an adapter ran 8x slower than with the base model. Ours does one matmul per adapter slot in use.
# The installer checks vLLM's release and the file's sha256, undoes the line-level patch this script used to
# apply, does nothing when ours is already there, and fails loudly on a file it does not know. It takes
# 0.1 s, so it runs every time: a change to our ops never rebuilds the venv, and a vLLM reinstalled over
# them is patched again.
"$VENV/bin/python" scripts/install_vllm_lora_ops.py ||
  die "vLLM's CPU LoRA ops could not be replaced (see above); scripts/install_vllm_lora_ops.py says why"

# --- 5. the project ------------------------------------------------------------------------------------
# The project itself, editable (its console script `ttrv`); redone only when pyproject.toml changes.
project_stamp=$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $VENV/.stamp-project || $(cat "$VENV/.stamp-project") != "$project_stamp" ]]; then
  step "installing the project (editable) into $VENV"
  "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e . 2>"$VENV/.project-install.log" ||
    die "pip could not install the project itself; see $VENV/.project-install.log"
  echo "$project_stamp" >"$VENV/.stamp-project"
fi
step "ready: $("$VENV/bin/python" -V), $("$VENV/bin/python" -c 'import vllm; print("vllm", vllm.__version__)' 2>/dev/null | tail -1), $(redis-server --version | cut -d' ' -f1-3)"
