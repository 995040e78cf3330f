"""Fine-tuning: `TrainSettings` (the paper's hyperparameters) and `train_model` (one
single-process run with TRL's SFTTrainer: LoRA on int8/nf4 weights, or full fine-tuning)."""

from .sft import TrainSettings, train_model

__all__ = ["TrainSettings", "train_model"]
