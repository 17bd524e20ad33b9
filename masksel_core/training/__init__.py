"""Training: the entry point, the epoch loop, its steps, the schedules, epoch records, the swap check."""
