"""Test-wide settings: no network, no user caches, tiny sizes."""

import os

import pytest
import torch

# Nothing in the tests may reach the network or a user's caches: weights and hub datasets are absent,
# exactly as on the CI machine. Set before any library reads them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("SMALLGAN_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "caches"
    monkeypatch.setenv("SMALLGAN_CACHE", str(cache / "smallgan"))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
