"""Fine-tuning: `TrainSettings` (the paper's hyperparameters) and `train_model` (one run with TRL's
SFTTrainer: LoRA on int8/nf4 weights, or full fine-tuning, optionally under DeepSpeed ZeRO-3).
`ruinstruct.train.launch` runs it as its own process (or N of them under torchrun) from a
`TrainRequest` file."""

from .sft import TrainSettings, train_model

__all__ = ["TrainSettings", "train_model"]
