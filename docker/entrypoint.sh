#!/bin/sh
# Both images start here, whatever the command (a worker, `prefect flow-run execute` from a Docker
# or Kubernetes pool, `ruinstruct ...`). A fresh volume (an empty Kubernetes PVC, a new bind mount)
# lacks the folders the image's ENV and the runs -> /cache/runs link point at: create them first.
set -eu
mkdir -p "${RUINSTRUCT_CACHE:-/cache}/runs" "${HF_HOME:-/cache/hf}" "${TORCH_EXTENSIONS_DIR:-/cache/torch_extensions}"
exec "$@"
