"""mer-orch orchestration: search-space files, Ray scheduling, Optuna studies, MLflow tracking, reports.

Knows nothing of graph convolutions: it calls ``mer_model.build_model`` / ``mer_model.train_fold`` with a
flat config dict and reads back a ``FoldResult``.
"""
