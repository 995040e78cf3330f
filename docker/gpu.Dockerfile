# syntax=docker/dockerfile:1
# GPU image of ruinstruct: what a flow run of the ruinstruct-gpu pool runs in (Docker pool:
# deployments/docker-gpu.json, Kubernetes pool: deployments/k8s-gpu.json), and a process worker for
# one GPU box (docker/compose.yaml, profile gpu). The project lives at /opt/ruinstruct, the working
# directory that prefect.yaml's pull step sets for the paper deployments.
#
#   docker build -f docker/gpu.Dockerfile -t REGISTRY/ruinstruct-gpu:TAG .     (context: the repo root)
#
# torch 2.13.0 is built against CUDA 13.0 (its PyPI wheel requires the cuda-toolkit 13.0 packages),
# so the cu130 index and a CUDA 13.0 base: hosts need an NVIDIA driver that runs CUDA 13.0 (580 or
# newer). The wheel brings its own CUDA libraries and cuDNN, so the base is the plain runtime image.
# No secret is baked in: the HF token and the judge's key come from the run's environment, a Prefect
# Secret block or the shared volume (deployments/pools.md).
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
# the version prefect.yaml names (prefect-version): the worker, the server and the runs agree
ARG PREFECT_VERSION=3.9.1
# ct2-cuda: CUDA 12's cuBLAS for CTranslate2 (translation.backend: ctranslate2) beside torch's CUDA 13
ARG EXTRAS=train,deepspeed,dask,ct2-cuda
ARG UID=10001

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# g++ and the Python headers: Triton and DeepSpeed compile small extensions at run time.
# Ubuntu's python3 refuses system-wide pip installs (PEP 668): everything goes into /opt/venv.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev g++ ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# torch first, from the CUDA index: a bare `torch` from PyPI would be whatever build PyPI serves.
# The constraint file keeps every later install on this torch and this Prefect (pip fails instead
# of swapping them).
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
    && printf 'torch==%s\nprefect==%s\n' "${TORCH_VERSION}" "${PREFECT_VERSION}" > /opt/venv/constraints.txt

RUN groupadd --gid "${UID}" ruinstruct \
    && useradd --create-home --uid "${UID}" --gid "${UID}" --shell /bin/bash ruinstruct \
    && mkdir -p /cache/hf /cache/runs /cache/torch_extensions /opt/ruinstruct \
    && chown -R ruinstruct:ruinstruct /cache

WORKDIR /opt/ruinstruct

# Dependencies in their own layer: only pyproject.toml and README.md (its readme) invalidate it.
COPY pyproject.toml README.md ./
COPY docker/requirements.py docker/entrypoint.sh docker/
RUN python docker/requirements.py "${EXTRAS}" > /tmp/requirements.txt \
    && pip install -c /opt/venv/constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project through pyproject: every dependency is satisfied above, so this builds only our code.
COPY src/ src/
COPY flows/ flows/
COPY tasks/ tasks/
COPY deployments/ deployments/
COPY configs/ configs/
COPY prefect.yaml ./
RUN pip install -c /opt/venv/constraints.txt ".[${EXTRAS}]" \
    && rm -rf build ./*.egg-info src/*.egg-info \
    && ln -s /cache/runs /opt/ruinstruct/runs

# The shared volume (mounted at /cache by the pool templates and compose): the Hugging Face cache,
# compiled DeepSpeed ops, and runs/ (the default run roots, their translation caches, persisted task
# results and results tables).
# hadolint's DL3064 reads TOKENIZERS_PARALLELISM as a token: it is a switch, no secret
# hadolint ignore=DL3064
ENV HF_HOME=/cache/hf \
    RUINSTRUCT_CACHE=/cache \
    TORCH_EXTENSIONS_DIR=/cache/torch_extensions \
    TOKENIZERS_PARALLELISM=false

# numeric, so that Kubernetes' runAsNonRoot can check it (k8s-gpu.json runs as 10001)
USER ${UID}:${UID}
ENTRYPOINT ["/opt/ruinstruct/docker/entrypoint.sh"]
# A Docker or Kubernetes pool replaces this with `prefect flow-run execute`; compose starts a worker.
CMD ["ruinstruct", "--help"]
