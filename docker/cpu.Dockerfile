# syntax=docker/dockerfile:1
# CPU image of ruinstruct: the Prefect server and the ruinstruct-cpu process worker of
# docker/compose.yaml, and the offline tiny profile (its tiny models are made at build time by
# `ruinstruct make-tiny`, where configs/tiny.yaml looks for them: /opt/ruinstruct/.cache/tiny).
#
#   docker build -f docker/cpu.Dockerfile -t REGISTRY/ruinstruct-cpu:TAG .     (context: the repo root)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG PREFECT_VERSION=3.9.1
# the tiny profile fine-tunes too (LoRA through peft, full through DeepSpeed on CPU)
ARG EXTRAS=train,deepspeed,dask
ARG UID=10001

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# g++: DeepSpeed compiles its CPU ops (shared-memory comm, Adam) on first use.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/* \
    && python -m venv /opt/venv

# torch first, the CPU build from its own index: a bare `torch` from PyPI is a multi-GB CUDA build.
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
    && printf 'torch==%s\nprefect==%s\n' "${TORCH_VERSION}" "${PREFECT_VERSION}" > /opt/venv/constraints.txt

RUN groupadd --gid "${UID}" ruinstruct \
    && useradd --create-home --uid "${UID}" --gid "${UID}" --shell /bin/bash ruinstruct \
    && mkdir -p /cache/hf /cache/runs /cache/torch_extensions /opt/ruinstruct \
    && chown -R ruinstruct:ruinstruct /cache

WORKDIR /opt/ruinstruct

COPY pyproject.toml README.md ./
COPY docker/requirements.py docker/entrypoint.sh docker/
RUN python docker/requirements.py "${EXTRAS}" > /tmp/requirements.txt \
    && pip install -c /opt/venv/constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY src/ src/
COPY flows/ flows/
COPY tasks/ tasks/
COPY deployments/ deployments/
COPY configs/ configs/
COPY prefect.yaml ./
RUN pip install -c /opt/venv/constraints.txt ".[${EXTRAS}]" \
    && rm -rf build ./*.egg-info src/*.egg-info \
    && ln -s /cache/runs /opt/ruinstruct/runs \
    && HF_HUB_OFFLINE=1 ruinstruct make-tiny --out .cache/tiny

# hadolint's DL3064 reads TOKENIZERS_PARALLELISM as a token: it is a switch, no secret
# hadolint ignore=DL3064
ENV HF_HOME=/cache/hf \
    RUINSTRUCT_CACHE=/cache \
    TORCH_EXTENSIONS_DIR=/cache/torch_extensions \
    TOKENIZERS_PARALLELISM=false \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# numeric, so that Kubernetes' runAsNonRoot can check it (k8s-gpu.json runs as 10001)
USER ${UID}:${UID}
ENTRYPOINT ["/opt/ruinstruct/docker/entrypoint.sh"]
CMD ["ruinstruct", "--help"]
