"""The tuning tool: command line, Optuna study, Ray workers and MLflow tracking."""
