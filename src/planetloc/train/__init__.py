"""Losses, data pipeline, configuration, checkpoints and the trainer (single process or DDP)."""
