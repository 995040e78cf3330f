"""Shards: the output path names the shard and the translator; a translated shard carries the
translator's scores."""

from __future__ import annotations

import pytest

from ruinstruct.config import TranslationConfig
from ruinstruct.io import read_dialogs, write_dialogs
from ruinstruct.schema import make_dialog
from ruinstruct.translate.cache import ParagraphCache
from ruinstruct.translate.engine import Translation, translator_id
from ruinstruct.translate.shards import plan_shards, shard_output, translate_shard

REF = {"source": "dolly", "index": 3, "hash": "a" * 64}


def test_shard_output_names_shard_and_translator(tmp_path):
    out = shard_output(tmp_path, REF, "m@main#1")
    assert out == shard_output(tmp_path, dict(REF), "m@main#1")  # stable
    assert out.parent == tmp_path / "dolly" and out.name.startswith("00003-")
    others = {
        shard_output(tmp_path, REF, "m@main#2"),  # another translator: never its finished shard
        shard_output(tmp_path, {**REF, "hash": "b" * 64}, "m@main#1"),  # other dialogs
        shard_output(tmp_path, {**REF, "index": 4}, "m@main#1"),
    }
    assert out not in others and len(others) == 3


@pytest.mark.parametrize("change", [{"dtype": "bfloat16"}, {"max_input_tokens": 99}, {"num_beams": 2}])
def test_shard_output_follows_every_translator_setting(tmp_path, change):
    base = TranslationConfig(model="m", device="cpu", dtype="float32", max_input_tokens=100)
    a = shard_output(tmp_path, REF, translator_id(base))
    assert a != shard_output(tmp_path, REF, translator_id(base.model_copy(update=change)))


class Scored:
    id = "fake-scored@main#0"

    def translate(self, texts):
        return [t.upper() for t in texts]

    def translate_scored(self, texts):
        return [Translation(t.upper(), -len(t) / 100) for t in texts]


def test_translated_shard_file_carries_the_scores(tmp_path):
    dialogs = [
        make_dialog(id=f"d:{i}", source="dolly", license="MIT", messages=[
            {"role": "user", "content": f"Question {i} here?"},
            {"role": "assistant", "content": "One part.\n\n```\ncode\n```\n\nOther part."},
        ])
        for i in range(3)
    ]
    write_dialogs(tmp_path / "raw.parquet", dialogs)
    refs = plan_shards("dolly", tmp_path / "raw.parquet", 2, tmp_path / "shards")
    tr = Scored()
    with ParagraphCache(tmp_path / "cache", tr.id) as cache:
        outs = []
        for ref in refs:
            out = shard_output(tmp_path / "translated", ref, tr.id)
            stats = translate_shard(ref, out, tr, cache)
            assert stats["output"] == str(out)
            outs += read_dialogs(out)
    assert [d["origin_id"] for d in outs] == ["d:0", "d:1", "d:2"]
    assert [d["meta"]["mt_logprob"] for d in outs] == [
        [[-len(f"Question {i} here?") / 100], [-0.09, -0.11]] for i in range(3)
    ]
