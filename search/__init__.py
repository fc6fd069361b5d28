"""Hyperparameter and task-weight search around the `mtl` trainer (Optuna + Ray Tune)."""
