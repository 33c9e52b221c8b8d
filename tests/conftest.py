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


@pytest.fixture(autouse=True)
def _sync_debug(monkeypatch):
    """SMALLGAN_SYNC_DEBUG=warn|error (set by benchmarks/gpu_proof.py): every training iteration runs under
    torch.cuda.set_sync_debug_mode, so one that waits for the GPU warns or fails its test. Logging, checkpoints
    and the tests' own checks read the device outside the iteration, as they must."""
    mode = os.environ.get("SMALLGAN_SYNC_DEBUG")
    if mode and torch.cuda.is_available():
        from smallgan.training.loop import Trainer

        plain = Trainer.train_iteration

        def checked(self):
            torch.cuda.set_sync_debug_mode(mode)
            try:
                return plain(self)
            finally:
                torch.cuda.set_sync_debug_mode(0)

        monkeypatch.setattr(Trainer, "train_iteration", checked)
