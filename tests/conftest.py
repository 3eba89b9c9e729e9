"""Shared fixtures: one Ray runtime and one cache folder for the whole test session."""

import os

import pytest


@pytest.fixture(scope="session")
def ray_runtime():
    """A local Ray runtime with 2 CPUs, shared by every test that runs workers."""
    import logging

    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """Modalities and teachers computed once per session (pyts.image costs ~18 s to import)."""
    return tmp_path_factory.mktemp("mmkd-cache")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working folder, as a user's would be."""
    monkeypatch.chdir(tmp_path)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return tmp_path
