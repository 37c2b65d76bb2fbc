"""Training: configs, the per-worker loop, checkpoints, MLflow tracking, evaluation."""
