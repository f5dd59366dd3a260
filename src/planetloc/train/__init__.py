"""Training: configuration, losses, DDP helpers and the streaming trainer."""
