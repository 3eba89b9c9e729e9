"""Multi-modal knowledge distillation for wearable-sensor time series.

The library is usable on its own (data, modalities, networks, KD methods, training loop);
it never imports the tuning machinery (optuna, ray, mlflow). Importing this package is
light: torch is imported only by the modules that need it.
"""

__version__ = "0.1.0"
