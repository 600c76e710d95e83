"""The distillation engine (torch): losses and methods at the bottom, then hooks and adapters,
teachers and the cache, the trainer, checkpoints and export."""
