"""smallgan/runs.py: a run's checkpoints, which one a launch continues, what may not change on resume; and notes
returned to the caller instead of printed."""

import pytest

from smallgan import runs
from smallgan.config import ModelConfig, load_config, take_notes
from smallgan.errors import SmallganError


def _run_with(tmp_path, *names: str):
    run = tmp_path / "run"
    for name in names:
        (runs.checkpoint_dir(run) / name).mkdir(parents=True)
    return run


def test_checkpoints_are_listed_by_step_and_interrupted_writes_are_not_checkpoints(tmp_path):
    run = _run_with(tmp_path, "step-0000010", "step-0000002", ".tmp-step-0000012-77", ".old-step-0000001-5")
    assert [p.name for p in runs.list_checkpoints(run)] == ["step-0000002", "step-0000010"]
    assert runs.checkpoint_step(runs.latest_checkpoint(run)) == 10
    assert runs.checkpoint_before(run, 9).name == "step-0000002" and runs.checkpoint_before(run, 1) is None
    assert runs.checkpoint_before(run, 10).name == "step-0000010"
    assert runs.checkpoint_step(run / "checkpoints" / ".tmp-step-0000012-77") is None
    assert sorted(p.name for p in runs.remove_incomplete(run)) == [".old-step-0000001-5", ".tmp-step-0000012-77"]
    assert runs.list_checkpoints(tmp_path / "none") == [] and runs.latest_checkpoint(tmp_path / "none") is None


def test_the_resume_decision(tmp_path):
    empty = tmp_path / "empty"
    assert runs.resume_decision(empty, "auto", overwrite=False) == (None, [])
    path, notes = runs.resume_decision(empty, "latest", overwrite=False)
    assert path is None and notes == [f"no checkpoint in {empty} yet; starting a new run"]
    run = _run_with(tmp_path, "step-0000003")
    assert runs.resume_decision(run, "auto", overwrite=False) == (run / "checkpoints" / "step-0000003", [])
    assert runs.resume_decision(run, "auto", overwrite=True) == (None, [])   # the caller removes them
    with pytest.raises(SmallganError, match="already has checkpoints"):
        runs.resume_decision(run, None, overwrite=False)
    assert runs.resume_decision(empty, str(run), overwrite=False)[0].name == "step-0000003"
    with pytest.raises(SmallganError, match="no such folder"):
        runs.checkpoint_to_resume(tmp_path / "missing")


def test_a_model_change_is_refused_by_name():
    saved, model = ModelConfig(ch=16), ModelConfig(ch=32)
    with pytest.raises(SmallganError, match=r"the --set options change the model of r: model.ch=32 \(the run has 16\)"):
        runs.refuse_model_change("r", saved, model, "the --set options")
    runs.refuse_model_change("r", saved, ModelConfig(ch=16), "the --set options")   # the same model passes


def test_loading_a_config_returns_its_notes_instead_of_printing_them(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    cfg = load_config(None, ["train.ema_decay=0.999"])
    assert capsys.readouterr().err == ""
    notes = take_notes(cfg)
    assert len(notes) == 1 and "train.ema_decay=0.999 is deprecated" in notes[0]
    assert take_notes(cfg) == []                   # taken once: the caller prints them once
