"""Print the project's requirements (pyproject's dependencies plus the named extras), one a line.

The images install these in a layer of their own, before the source is copied, so a code edit
rebuilds only the last layer (`pip install ".[extras]"`, which then finds every dependency
satisfied). Standard library only: it runs before anything is installed.

    python docker/requirements.py train,deepspeed,dask > /tmp/requirements.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        # a typo in the image's EXTRAS would otherwise build an image without, say, deepspeed
        raise SystemExit(f"{pyproject}: no extra named {', '.join(unknown)} (have: {', '.join(optional)})")
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += [r for r in optional[extra] if r not in reqs]
    return reqs


def main(argv: list[str]) -> int:
    extras = [e.strip() for e in (argv[1] if len(argv) > 1 else "").split(",") if e.strip()]
    pyproject = Path(argv[2]) if len(argv) > 2 else Path("pyproject.toml")
    print("\n".join(requirements(pyproject, extras)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
