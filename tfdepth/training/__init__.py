"""Training: schedules, optimisers, checkpoints, logging and the custom training loop."""
