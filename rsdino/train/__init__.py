"""Pretraining: the loop, schedules and checkpoints."""
