"""Checkpoints across versions: frozen checkpoints in tests/fixtures that this and every later smallgan must
resume, or refuse with one line; and the format-version bounds (smallgan/checkpoint.py).

tests/fixtures/checkpoint-format1/step-0000002 was written by smallgan with FORMAT_VERSION 1 (2 steps of
the smallest BigGAN: tiny-cpu with model.ch=1, z_dim=8, shared_dim=2, no attention, unconditional, seed 17,
on builtin:shapes; ~120 KB, most of it Adam's moments). Never regenerate a frozen fixture: a format change
adds a checkpoint-formatN folder beside it.
"""

import re
import shutil
from pathlib import Path

import pytest
import torch

from smallgan import checkpoint as ckpt
from smallgan import runs
from smallgan.config import read_config
from smallgan.errors import SmallganError
from smallgan.training.loop import Trainer

FIXTURES = Path(__file__).parent / "fixtures"
FROZEN = sorted(FIXTURES.glob("checkpoint-format*/step-*"))
FORMAT1 = FIXTURES / "checkpoint-format1" / "step-0000002"


def _format_of(path: Path) -> int:
    return int(re.search(r"checkpoint-format(\d+)", str(path)).group(1))


def test_every_format_has_a_frozen_checkpoint():
    """Bumping FORMAT_VERSION without freezing a checkpoint of the new format fails here."""
    assert {_format_of(p) for p in FROZEN} >= set(range(max(ckpt.OLDEST_FORMAT_VERSION, 1), ckpt.FORMAT_VERSION + 1))


@pytest.mark.parametrize("path", FROZEN, ids=lambda p: p.parent.name)
def test_frozen_checkpoints_load_or_are_refused_with_one_line(path):
    if _format_of(path) < ckpt.OLDEST_FORMAT_VERSION:
        with pytest.raises(SmallganError, match="older than this smallgan reads") as e:
            ckpt.load_checkpoint(path)
        assert "\n" not in str(e.value)
        return
    weights, state, cfg = ckpt.load_checkpoint(path)
    assert set(weights) == {"G", "D", "G_ema"}
    assert state["format_version"] == _format_of(path) and state["step"] == int(path.name.split("-")[1])
    assert {"g_opt", "d_opt", "g_scaler", "d_scaler", "counters"} <= set(state)
    assert cfg.model.arch == "biggan"


def test_the_next_format_still_reads_this_one_and_a_newer_one_is_refused(tmp_path, monkeypatch):
    # A checkpoint written now, read by the next version (FORMAT_VERSION + 1, OLDEST_FORMAT_VERSION unchanged).
    monkeypatch.setattr(ckpt, "FORMAT_VERSION", ckpt.FORMAT_VERSION + 1)
    ckpt.load_checkpoint(FORMAT1)
    monkeypatch.undo()
    # Read by this version, a checkpoint of the next one is refused in one line; older than it reads, likewise.
    newer = shutil.copytree(FORMAT1, tmp_path / "step-0000002")
    state = torch.load(newer / "state.pt", weights_only=True)
    for version, message in ((ckpt.FORMAT_VERSION + 1, "newer than this smallgan"),
                             (ckpt.OLDEST_FORMAT_VERSION - 1, "older than this smallgan reads")):
        torch.save({**state, "format_version": version}, newer / "state.pt")
        with pytest.raises(SmallganError, match=message) as e:
            ckpt.load_checkpoint(newer)
        assert "\n" not in str(e.value)


@pytest.mark.slow
def test_the_format_1_checkpoint_resumes_training(tmp_path):
    cfg = read_config(FORMAT1 / "config.json")
    cfg.train.out_dir, cfg.train.name, cfg.train.max_kimg = str(tmp_path), "resumed", 0.012   # 3 steps of 4 images
    trainer = Trainer(cfg, resume=str(FORMAT1))
    frozen, _, _ = ckpt.load_checkpoint(FORMAT1)
    assert trainer.counters.step == 2
    assert all(torch.equal(v, frozen["G"][k]) for k, v in trainer.G.state_dict().items())
    trainer.run()
    assert trainer.counters.step == 3
    assert runs.latest_checkpoint(trainer.run_dir).name == "step-0000003"
    assert not any(p.name.startswith(".") for p in FORMAT1.iterdir())      # the fixture is only read
