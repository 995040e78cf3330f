"""Evaluation of fine-tuned models: MMLU and MMLU RU (mmlu.py), MT-Bench RU (mt_bench.py with
judge.py), and the model loader they share (load.py)."""
