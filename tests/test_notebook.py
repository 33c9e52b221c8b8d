"""notebooks/smallgan_colab.ipynb runs, in its smoke mode, on a CPU: every code cell in order, install included, as
Jupyter would, and nothing but the smoke switch differs from a run on Colab.

How a cell runs here: `!command` lines go to the shell (with this environment's executables first on PATH and
`{expression}` expanded from the notebook's variables, as IPython does), everything else is Python executed in one
shared namespace, unchanged. The only lines left out are the two TensorBoard magics (`%load_ext`, `%tensorboard`),
which need a Jupyter kernel. IPython's display is replaced by a recorder, so the test also sees the images the
notebook shows. The smoke switch, SMALLGAN_NOTEBOOK_SMOKE=<this checkout>, is the one environment variable the
notebook reads: it installs from the checkout instead of SMALLGAN_SOURCE, keeps the work in a local folder instead
of Google Drive, and trains two steps of tiny-cpu on the built-in shapes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "smallgan_colab.ipynb"
MAGICS = {"%load_ext tensorboard", "%tensorboard --logdir runs"}   # need a kernel: the only lines not run here


def load_notebook() -> dict:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_the_notebook_is_valid_nbformat_4():
    nb = load_notebook()
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    ids = [cell["id"] for cell in nb["cells"]]
    assert len(set(ids)) == len(ids)
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and isinstance(cell["metadata"], dict)
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None   # committed without outputs
    try:
        import nbformat
    except ImportError:
        return
    nbformat.validate(nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4))


class DisplayRecorder:
    """Stands in for IPython.display: `display(Image(filename=...))` is recorded, not rendered."""

    def __init__(self) -> None:
        self.shown: list[Path] = []
        module = types.ModuleType("IPython.display")
        module.Image = lambda filename=None, **kwargs: Path(filename)
        module.display = lambda *objects, **kwargs: self.shown.extend(objects)
        module.clear_output = lambda wait=False: None
        package = types.ModuleType("IPython")
        package.display = module
        self.modules = {"IPython": package, "IPython.display": module}


def expand(line: str, namespace: dict) -> str:
    """IPython's `{expression}` expansion in shell lines."""
    return re.sub(r"\{([^{}]+)\}", lambda m: str(eval(m.group(1), namespace)), line)


def run_cell(text: str, namespace: dict, env: dict, name: str) -> None:
    python: list[str] = []

    def flush() -> None:
        if python:
            exec(compile("\n".join(python), name, "exec"), namespace)
            python.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("%"):
            assert stripped in MAGICS, f"{name}: {stripped} cannot run outside Jupyter"
            continue
        if stripped.startswith("!"):
            flush()
            command = expand(stripped[1:], namespace)
            r = subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, f"{name}: `{command}` failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        else:
            python.append(line)
    flush()


def code_cells(nb: dict) -> list[str]:
    return [source(cell) for cell in nb["cells"] if cell["cell_type"] == "code"]


def test_the_smoke_switch_is_the_only_difference_from_a_colab_run():
    code = "\n".join(code_cells(load_notebook()))
    # The one environment variable the notebook reads, and the only way a cell learns it is being tested.
    assert re.findall(r"environ\.get\(\s*\"(\w+)\"|getenv\(\s*\"(\w+)\"", code) == [("SMALLGAN_NOTEBOOK_SMOKE", "")]
    assert "pytest" not in code and "PYTEST" not in code
    # Everything that needs Colab or Drive is behind `not SMOKE` or a setting the smoke switch changes (SOURCE).
    colab_lines = [line.strip() for line in code.splitlines() if "google.colab" in line]
    assert colab_lines == ["from google.colab import drive", "from google.colab import files"], colab_lines
    assert "if not SMOKE:   # the run folder on Drive" in code and 'if SOURCE == "upload":' in code
    # One clearly marked variable says where smallgan comes from, and the install cell installs it.
    assert code.count("SMALLGAN_SOURCE = ") == 1 and "SET THIS" in code
    assert "!pip install -q {PIP_ARGS}" in code and "torch.cuda.is_available()" in code
    assert "%tensorboard --logdir runs" in code and 'WORK = "/content/drive/MyDrive/smallgan"' in code
    badge = "https://colab.research.google.com/github/OWNER/smallgan/blob/main/notebooks/smallgan_colab.ipynb"
    assert badge in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_notebook_runs_in_smoke_mode(tmp_path, monkeypatch):
    nb = load_notebook()
    recorder = DisplayRecorder()
    for module_name, module in recorder.modules.items():
        monkeypatch.setitem(sys.modules, module_name, module)
    monkeypatch.setenv("SMALLGAN_NOTEBOOK_SMOKE", str(ROOT))
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    namespace: dict = {"__name__": "__main__"}
    cells = code_cells(nb)
    for i, text in enumerate(cells):   # every code cell, the install cell included
        run_cell(text, namespace, env, f"code cell {i}")
    assert len(cells) >= 8

    assert namespace["SMOKE"] == str(ROOT) and namespace["RECIPE"] == "tiny-cpu" and namespace["SOURCE"] == "builtin"
    work = tmp_path / "smallgan-work"          # stands in for the Drive folder
    assert Path.cwd() == work and (work / "faces-prepared" / "smallgan.json").is_file()
    run = work / "runs" / namespace["NAME"]
    assert (run / "checkpoints" / "step-0000002").is_dir() and (run / "generator.safetensors").is_file()
    assert (run / "tensorboard").is_dir()
    grid = work / f"{namespace['NAME']}-grid.png"
    assert grid.is_file() and (work / "python-grid.png").is_file()
    # Progress grids were shown while training ran, then the sampled grids.
    shown = [p.name for p in recorder.shown]
    assert shown[:2] == ["step-0000001.png", "step-0000002.png"], shown
    assert shown[2:] == [grid.name, "python-grid.png"], shown
    from PIL import Image

    with Image.open(grid) as image:
        assert image.size[0] > 32 * 4   # 16 images of 32 px, 4 per row, with padding

    # Running the training cell again continues the run (as after a Colab disconnect).
    train_cell = next(i for i, text in enumerate(cells) if '"train", "--recipe"' in text)
    namespace["TRAIN_ARGS"] = ["--max-steps", "3", "--sample-every", "0", "--eval-every", "0"]
    run_cell(cells[train_cell], namespace, env, "the training cell again")
    assert (run / "checkpoints" / "step-0000003").is_dir()
