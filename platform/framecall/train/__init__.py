"""Training: configs, the per-worker loop, checkpoints, evaluation (MLflow tracking: :mod:`framecall.tracking`)."""
