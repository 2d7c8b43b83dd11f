"""Training the M3E way: contrastive learning with in-batch negatives on many same-source batches."""

from m3e.training.trainer import FineTuner, TrainConfig

__all__ = ["FineTuner", "TrainConfig"]
