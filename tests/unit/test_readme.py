"""The README carries what a user needs: its config reference matches the models, and it shows how
to load the dataset folder and which paths are relative to what."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("config_reference", REPO / "tools/config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_current():
    tool = _tool()
    block = tool.readme_block((REPO / "README.md").read_text(encoding="utf-8"))
    assert block is not None, "README.md lost its config reference markers"
    assert block == tool.render(), (
        "README.md's config reference is stale: run `.venv/bin/python tools/config_reference.py --write`"
    )


def test_config_reference_covers_every_field():
    """Every field of every section, nested ones included, and the dialog record's fields."""
    from ruinstruct.config import RunConfig
    from ruinstruct.schema import FIELDS

    tool = _tool()
    text = tool.render()
    seen: set[type] = set()

    def walk(model, path):
        if model in seen:
            return
        seen.add(model)
        heading = f"#### `{path}`" if path else "#### top level"
        section = text[text.index(heading):]
        section = section[: section.find("\n#### ", 1)] if "\n#### " in section[1:] else section
        for name, field in model.model_fields.items():
            assert f"| `{name}` |" in section, f"{path or 'top level'}.{name} missing from the reference"
            for sub in tool._models_in(field.annotation):
                key = f"{path}.{name}" if path else name
                walk(sub, key + ("[]" if f"#### `{key}[]`" in text else ""))

    walk(RunConfig, "")
    assert len(seen) >= 5
    record = text[text.index("#### Dialog record"):]
    for name in FIELDS:
        assert f"| `{name}` |" in record, name


def test_every_field_in_the_reference_says_what_it_does():
    """No empty description cell, in any section or in the dialog record: a field added without
    `Field(description=...)` fails here, not in a user's reading."""
    text = _tool().render()
    rows = 0
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        rows += 1
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert cells[-1], f"no description: {line}"
    assert rows >= 60


def test_readme_says_how_to_load_the_dataset_and_resolve_paths():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert 'load_dataset("runs/tiny/data/final")' in text
    assert "relative to the profile file" in text and "relative to the working directory" in text
    assert "DESIGN.md" not in text
