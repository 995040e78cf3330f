"""Translation on Dask against the default runner (not a test; prints one JSON object).

    .venv/bin/python bench/dask.py [--tiny .cache/tiny] [--workers 2] [--shard-size 8] [--repeat 1]

The data flow of configs/tiny.yaml (data only: the project's fixtures, the tiny translator),
run through the real CLI (`ruinstruct data`, a temporary Prefect server each time) into fresh
roots, once with the default runner (the flow's threads, one translator in the process) and
once with `--runner dask` (a LocalCluster of --workers processes, each loading its own
translator), alternating when --repeat > 1. Printed: each side's wall times (the whole command,
best of the repeats), the shard count, and whether the two datasets are the same bytes.

What to expect here: on a 2-core machine the tiny translator's shards take well under a second
each, so Dask's start (scheduler, worker processes, a translator load per worker) dominates and
Dask is slower. Its use is many GPUs: one Dask worker per GPU, each translating its own shards.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def profile(tiny: Path, shard_size: int, out: Path) -> Path:
    """configs/tiny.yaml, data stage only, with absolute paths."""
    raw = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    for key in ("training", "evaluation"):
        raw.pop(key, None)
    for src in raw["data"]["sources"]:
        src["path"] = str((REPO / "configs" / src["path"]).resolve())
    raw["translation"]["model"] = str(tiny / "translator")
    raw["translation"]["shard_size"] = shard_size
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def run(config: Path, root: Path, runner: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    res = subprocess.run(
        [str(REPO / ".venv/bin/ruinstruct"), "data", "--config", str(config), "--output", str(root), "--runner", runner],
        env=env, capture_output=True, text=True, cwd=REPO,
    )
    took = time.perf_counter() - started
    if res.returncode != 0:
        sys.exit(f"ruinstruct data --runner {runner} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", type=Path, default=REPO / ".cache/tiny")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    if not (args.tiny / "translator").is_dir():
        sys.exit(f"--tiny {args.tiny}: no translator folder (run `ruinstruct make-tiny --out {args.tiny}`)")

    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        tmp = Path(tmp)
        config = profile(args.tiny, args.shard_size, tmp / "tiny-data.yaml")
        if args.workers != 2:
            raw = yaml.safe_load(config.read_text())
            raw["runner"] = {"kind": "default", "n_workers": args.workers}
            config.write_text(yaml.safe_dump(raw, sort_keys=False))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_HOME": str(tmp / "prefect")}
        env.pop("PREFECT_API_URL", None)  # each run starts its own temporary server, as a user's would
        times: dict[str, list[float]] = {"default": [], "dask": []}
        digests: dict[str, set[str]] = {"default": set(), "dask": set()}
        shards = 0
        for i in range(args.repeat):
            for runner in (("default", "dask") if i % 2 == 0 else ("dask", "default")):
                root = tmp / f"{runner}-{i}"
                times[runner].append(run(config, root, runner, env))
                digests[runner].add(digest(root / "data/final"))
                shards = len(list((root / "data/translated").rglob("*.parquet")))
    result = {
        "profile": "configs/tiny.yaml (data only)",
        "shards": shards,
        "dask_workers": args.workers,
        "repeat": args.repeat,
        "default_wall_s": round(min(times["default"]), 2),
        "dask_wall_s": round(min(times["dask"]), 2),
        "all_wall_s": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "dask_over_default": round(min(times["dask"]) / min(times["default"]), 3),
        "same_dataset_bytes": len(digests["default"] | digests["dask"]) == 1,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
