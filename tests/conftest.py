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


@pytest.fixture
def tiny_cfg(tmp_path):
    """``tiny_cfg(*overrides, name="run")``: the tiny-cpu recipe at the tests' sizes (tests/tiny.py), its run
    folder under this test's tmp_path."""
    from tiny import tiny

    return lambda *extra, name="run": tiny(tmp_path, *extra, name=name)


@pytest.fixture(autouse=True)
def _sync_debug(request, monkeypatch):
    """Every training iteration of a GPU test (marked ``gpu``) runs under torch.cuda.set_sync_debug_mode("error"),
    so an iteration that waits for the GPU fails its test; SMALLGAN_SYNC_DEBUG=warn|error sets the mode for
    every test (benchmarks/gpu_proof.py), 0 turns it off. Logging, checkpoints and the tests' own checks read
    the device outside the iteration, as they must."""
    default = "error" if request.node.get_closest_marker("gpu") else ""
    mode = os.environ.get("SMALLGAN_SYNC_DEBUG", default)
    if mode and mode != "0" and torch.cuda.is_available():
        from smallgan.training.loop import Trainer

        plain = Trainer.train_iteration

        def checked(self):
            torch.cuda.set_sync_debug_mode(mode)
            try:
                return plain(self)
            finally:
                torch.cuda.set_sync_debug_mode(0)

        monkeypatch.setattr(Trainer, "train_iteration", checked)
