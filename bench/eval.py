"""Evaluation benchmark (not a test; prints one JSON object).

    .venv/bin/python bench/eval.py [--model .cache/tiny/llama] [--batch-size 8] [--repeat 3]
                                   [--max-new-tokens 32] [--mt-questions 16]

One run, one model, the same questions for both sides of each comparison:

  mmlu      the project's MMLU and MMLU RU fixture questions (resources/fixtures/mmlu_{en,ru}),
            5-shot prompts, scored two ways at the same batch size (sequences per forward):
              one_pass             ruinstruct's scorer: one forward per question, the four letter
                                   logits read at the answer position (evaluate.mmlu.score_letters)
              four_continuations   the usual log-likelihood way: prompt + " A".." D" each run as
                                   its own sequence, the continuation's log-probs summed
                                   (evaluate.mmlu.score_continuations): four forwards per question
            questions/s of each (tokenization included, best of --repeat runs, alternating),
            speedup, and agreement: identical predictions, and the largest difference between
            the two sides' letter probabilities (softmax over the four continuations'
            log-likelihoods on the baseline side).
  mt_bench  the project's MT-Bench RU fixture questions, two turns each, answered through the
            model's chat template with the paper's sampling settings (evaluate.mt_bench.
            generate_answers): batched (--batch-size questions per generate call, left padding)
            against one question at a time (batch_size=1). answers/s counts turn answers; new
            tokens/s counts the answer tokens (random tiny weights rarely stop early, so both
            sides generate about max_new_tokens per answer).

The default model is the tiny random LLaMA of `ruinstruct make-tiny` (its size is printed);
without a chat template the paper's LoRA template is installed on its tokenizer. On CPU torch
runs one thread (two contended threads on a shared 2-core machine were ~15x slower).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

FIXTURES = REPO / "src" / "ruinstruct" / "resources" / "fixtures"


def mmlu_prompts(shots: int) -> list[tuple[str, str, str]]:
    """(lang, prompt, gold) for every fixture test question, EN and RU."""
    from ruinstruct.evaluate.mmlu import build_prompt, load_subject, local_subjects

    out = []
    for lang, data in (("en", FIXTURES / "mmlu_en"), ("ru", FIXTURES / "mmlu_ru")):
        for subject in local_subjects(data, lang):
            d = load_subject(data, lang, subject)
            out += [(lang, build_prompt(subject, d.dev[:shots], q, lang), q.gold) for q in d.test]
    return out


def bench_mmlu(model, tok, batch_size: int, repeat: int, shots: int) -> dict:
    import math

    from ruinstruct.evaluate.mmlu import encode_prompt, letter_tokens, score_continuations, score_letters

    items = mmlu_prompts(shots)
    by_lang = {lang: [i for i, it in enumerate(items) if it[0] == lang] for lang in ("en", "ru")}

    def one_pass() -> list[list[float]]:
        probs: list[list[float]] = [[] for _ in items]
        for lang, idx in by_lang.items():
            letters = letter_tokens(tok, lang)
            inputs = [encode_prompt(tok, items[i][1], letters) for i in idx]
            for i, p in zip(idx, score_letters(model, tok, inputs, letters, batch_size=batch_size), strict=True):
                probs[i] = p
        return probs

    def four() -> list[list[float]]:
        return score_continuations(model, tok, [it[1] for it in items], batch_size=batch_size)

    one_pass(), four()  # warm-up (first-call allocations, lazy imports)
    times = {"one_pass": [], "four_continuations": []}
    for _ in range(repeat):
        for name, fn in (("one_pass", one_pass), ("four_continuations", four)):
            t = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - t)
            if name == "one_pass":
                fast = result
            else:
                slow = result
    n = len(items)

    def argmax(v: list[float]) -> int:
        return max(range(4), key=lambda j: v[j])

    slow_probs = []
    for ll in slow:
        e = [math.exp(x - max(ll)) for x in ll]
        slow_probs.append([x / sum(e) for x in e])
    same = sum(argmax(a) == argmax(b) for a, b in zip(fast, slow, strict=True))
    best = {k: min(v) for k, v in times.items()}
    return {
        "questions": n, "shots": shots, "batch_size": batch_size, "repeat": repeat,
        "one_pass": {"sequences": n, "seconds": round(best["one_pass"], 4),
                     "questions_per_s": round(n / best["one_pass"], 2)},
        "four_continuations": {"sequences": 4 * n, "seconds": round(best["four_continuations"], 4),
                               "questions_per_s": round(n / best["four_continuations"], 2)},
        "speedup": round(best["four_continuations"] / best["one_pass"], 2),
        "agreement": round(same / n, 4), "identical_predictions": same == n,
        "max_prob_diff": float(f"{max(abs(x - y) for a, b in zip(fast, slow_probs, strict=True) for x, y in zip(a, b, strict=True)):.2e}"),
        "accuracy_one_pass": round(100 * sum(LETTERS[argmax(p)] == it[2] for p, it in zip(fast, items, strict=True)) / n, 2),
    }


LETTERS = "ABCD"


def bench_mt_bench(model, tok, batch_size: int, max_new_tokens: int, n_questions: int) -> dict:
    from ruinstruct.evaluate.mt_bench import fixture_questions, generate_answers, load_questions

    questions = load_questions(fixture_questions())[:n_questions]
    generate_answers(model, tok, questions[:1], max_new_tokens=4, batch_size=1)  # warm-up
    out = {"questions": len(questions), "turns": sum(len(q["turns"]) for q in questions),
           "max_new_tokens": max_new_tokens}
    for name, bs in (("batched", batch_size), ("one_at_a_time", 1)):
        t = time.perf_counter()
        answers = generate_answers(model, tok, questions, max_new_tokens=max_new_tokens, batch_size=bs, seed=0)
        seconds = time.perf_counter() - t
        n_answers = sum(len(a) for a in answers)
        tokens = sum(len(tok(x, add_special_tokens=False)["input_ids"]) for a in answers for x in a)
        out[name] = {"batch_size": bs, "seconds": round(seconds, 3), "answers": n_answers,
                     "answers_per_s": round(n_answers / seconds, 3), "new_tokens": tokens,
                     "new_tokens_per_s": round(tokens / seconds, 1)}
    out["speedup"] = round(out["batched"]["answers_per_s"] / out["one_at_a_time"]["answers_per_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / ".cache" / "tiny" / "llama")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--mt-questions", type=int, default=16)
    ap.add_argument("--skip-mt-bench", action="store_true")
    args = ap.parse_args()

    import torch

    from ruinstruct.chat import install_template
    from ruinstruct.evaluate.load import eval_device, load_for_eval

    device, dtype = eval_device()
    if device == "cpu":
        torch.set_num_threads(1)
    model, tok = load_for_eval(args.model)
    if not getattr(tok, "chat_template", None):
        install_template(tok, "lora")
    report = {
        "model": str(args.model), "parameters": sum(p.numel() for p in model.parameters()),
        "model_type": model.config.model_type, "device": device, "dtype": str(dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads() if device == "cpu" else None,
        "mmlu": bench_mmlu(model, tok, args.batch_size, args.repeat, args.shots),
    }
    if not args.skip_mt_bench:
        report["mt_bench"] = bench_mt_bench(model, tok, args.batch_size, args.max_new_tokens, args.mt_questions)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
