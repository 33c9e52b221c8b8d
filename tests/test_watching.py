"""Watching and steering a run: progress images, trackers, resume by rerunning the command, discoverability,
and the commands of the README and docs/ (every command and flag they show exists)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from smallgan import __version__
from smallgan.cli import app
from smallgan.config import recipe_names
from smallgan.errors import SmallganError
from smallgan.training.stats import read_metrics
from tiny import TINY_BASE

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]   # what users read: every command in them must exist
TINY = [*TINY_BASE, "train.batch=4", "train.d_steps=1", "train.log_every=1"]


def invoke(*args: str):
    """The CLI in this process (no subprocess start-up); a SmallganError comes back raised."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def train(tmp_path: Path, *args: str, sets: list[str] = TINY):
    options = [x for s in [*sets, f"train.out_dir={tmp_path}"] for x in ("--set", s)]
    result = invoke("train", *args, *options)
    assert result.exit_code == 0, result.output
    return result.output


# ---------------------------------------------------------------------------------------------------------
# Seeing a run


@pytest.mark.slow
def test_a_run_shows_itself_and_the_same_command_continues_it(tmp_path):
    """One run, to save CI time: what it writes to watch it (reals.png, latest.png, log lines, TensorBoard
    images, a timelapse), continued by rerunning the command, by --resume RUN and by a checkpoint folder."""
    tensorboard = pytest.importorskip("tensorboard", reason="TensorBoard (the dev extra) logs the grids")
    command = ["--recipe", "tiny-cpu", "--name", "run"]
    sets = [*TINY, "train.sample_every=1"]
    out = train(tmp_path, *command, "--max-steps", "1", sets=sets)
    run = tmp_path / "run"
    # Real images as D sees them, at the grid's size; the newest progress grid also as latest.png.
    assert Image.open(run / "reals.png").size == Image.open(run / "samples" / "step-0000001.png").size
    assert (run / "samples" / "latest.png").read_bytes() == (run / "samples" / "step-0000001.png").read_bytes()
    # The same command with a higher limit continues: no --resume, no "already has checkpoints".
    out2 = train(tmp_path, *command, "--max-steps", "2", sets=sets)
    assert "continuing" in out2 and "train.max_kimg 0.004 -> 0.008" in out2 and "resumed from" in out2
    assert (run / "samples" / "latest.png").read_bytes() == (run / "samples" / "step-0000002.png").read_bytes()
    # One log line per interval with the figures a user watches (the terminal keeps them all).
    lines = [line for line in (out + out2).splitlines() if line.startswith("step ")]
    assert len(lines) == 2 and all(k in lines[-1] for k in ("step 2/2", "kimg", "img/s", "s/kimg", "MB", "eta"))
    # TensorBoard by default when installed: the grids are images beside the scalars; a continued run appends.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"samples", "reals"} <= set(events.Tags()["images"]), tensorboard.__version__
    assert sorted(e.step for e in events.Images("samples")) == [1, 2]     # each grid once, the last included
    assert {"d_loss", "g_loss", "img_s", "kimg"} <= set(events.Tags()["scalars"])
    # The saved grids as an animation, one frame per grid.
    result = invoke("timelapse", str(run), "--out", str(tmp_path / "run.gif"))
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "run.gif").n_frames == 2
    with pytest.raises(SmallganError, match="imageio"):
        invoke("timelapse", str(run), "--out", str(tmp_path / "run.mp4"))

    # Without the recipe or the --set options: the run's saved config is the base (model.ch=4, not tiny-cpu's).
    out = invoke("train", "--resume", str(run), "--max-steps", "3").output
    assert "resumed from" in out and "step-0000002" in out
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "d_loss" in r]
    assert steps == [1, 2, 3]                  # each continuation carried on from its checkpoint
    assert '"ch": 4' in (run / "config.json").read_text()
    out = invoke("train", "--resume", str(run / "checkpoints" / "step-0000002"), "--max-steps", "5", "--dry-run")
    assert "continuing" in out.output and "step-0000002" in out.output and '"max_kimg": 0.02' in out.output
    # A change of model is refused by name; --overwrite starts over (from the recipe and options given).
    with pytest.raises(SmallganError, match="model.ch=8"):
        invoke("train", "--resume", str(run), "--set", "model.ch=8")
    with pytest.raises(SmallganError, match="no such folder"):
        invoke("train", "--resume", str(tmp_path / "missing"))
    out = invoke("train", *command, "--overwrite", "--dry-run", "--set", "model.ch=8", "--set",
                 f"train.out_dir={tmp_path}").output
    assert "continuing" not in out and '"ch": 8' in out


def test_a_new_run_without_recipe_says_which_it_trains(tmp_path):
    out = invoke("train", "--dry-run", "--set", f"train.out_dir={tmp_path}").output
    assert "no --recipe given: training tiny-cpu" in out and "smallgan recipes" in out


# ---------------------------------------------------------------------------------------------------------
# Discoverability


def test_version_recipes_and_help_point_at_the_settings():
    assert invoke("--version").output.strip() == f"smallgan {__version__}"
    listing = invoke("recipes").output
    for name in recipe_names():
        assert re.search(rf"{re.escape(name)}\s+│\s+\S", listing), name      # each with a description
    help_text = " ".join(invoke("--help").output.split())
    assert "smallgan recipes" in help_text and "smallgan/config.py" in help_text
    with pytest.raises(SmallganError, match="--precision fp32: use one of auto .* no"):
        invoke("bench", "--precision", "fp32")
    with pytest.raises(SmallganError, match="--log-with tb: use one of"):
        invoke("train", "--log-with", "tb", "--dry-run")


def _documented_commands(document: Path) -> list[list[str]]:
    """The argument lists of every `smallgan ...` (or `-m smallgan.train ...`) command in a document's shell
    blocks: continuation lines joined, split at `&&`, `;` and pipes, comments dropped."""
    text = document.read_text(encoding="utf-8")
    commands = []
    for language, block in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S):
        if language not in ("", "bash", "sh", "shell", "console"):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            for segment in re.split(r"&&|;|\s\|\s", line):
                try:
                    tokens = shlex.split(segment, comments=True)
                except ValueError:
                    continue
                for i, token in enumerate(tokens):
                    if token == "smallgan" and i == 0:
                        commands.append(tokens[1:])
                        break
                    elif token == "-m" and tokens[i + 1:i + 2] in (["smallgan.train"], ["smallgan"]):
                        commands.append((["train"] if tokens[i + 1] == "smallgan.train" else []) + tokens[i + 2:])
                        break
    return commands


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_command_and_flag_the_documents_show_exists(document):
    group = typer.main.get_command(app)
    named = set()
    where = document.relative_to(ROOT).as_posix()
    for args in _documented_commands(document):
        command, path, rest = group, [], list(args)
        while hasattr(command, "commands") and rest and rest[0] in command.commands:   # into (sub)commands
            path.append(rest[0])
            command = command.commands[rest.pop(0)]
        if hasattr(command, "commands") and rest and not rest[0].startswith("-"):
            pytest.fail(f"{where}: `smallgan {' '.join(args)}`: no command {rest[0]!r}")
        named.add(tuple(path))
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}
        for token in rest:
            flag = token.split("=", 1)[0]
            if re.fullmatch(r"--?[A-Za-z][\w-]*", flag) and flag not in known:
                pytest.fail(f"{where}: `smallgan {' '.join(args)}`: {' '.join(path) or 'smallgan'} has no {flag}")
    if document == README:   # the parser found the blocks: the README shows the everyday path
        assert {("train",), ("sample",), ("prepare",), ("push",)} <= named, named
    for path in sorted(named):
        result = invoke(*path, "--help")
        assert result.exit_code == 0 and "Usage" in result.output, (path, result.output[-500:])


def test_the_readme_is_a_newcomers_five_minutes_and_links_only_existing_docs():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(((?!https?:)[^)#\s]+)", document.read_text(encoding="utf-8")):
            assert (document.parent / target).exists(), f"{document.name} links to a missing {target}"
