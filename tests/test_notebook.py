"""notebooks/smallgan_colab.ipynb runs, in its smoke mode, on a CPU: its code cells in order, as Jupyter would.

How a cell runs here: `!command` lines go to the shell (with this environment's executables first on PATH and
`{expression}` expanded from the notebook's variables, as IPython does), `%magic` lines are left out, everything
else is Python executed in one shared namespace. Cells tagged "install" (pip) or "colab-only" are skipped: the
package under test is already installed here. IPython's display is replaced by a recorder, so the test also sees
the images the notebook shows.
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

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "smallgan_colab.ipynb"
SKIPPED_TAGS = {"install", "colab-only"}


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
            continue
        if stripped.startswith("!"):
            flush()
            command = expand(stripped[1:], namespace)
            r = subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, f"{name}: `{command}` failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        else:
            python.append(line)
    flush()


@pytest.mark.slow
def test_the_notebook_runs_in_smoke_mode(tmp_path, monkeypatch):
    nb = load_notebook()
    recorder = DisplayRecorder()
    for module_name, module in recorder.modules.items():
        monkeypatch.setitem(sys.modules, module_name, module)
    monkeypatch.setenv("SMALLGAN_NOTEBOOK_SMOKE", "1")
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    namespace: dict = {"__name__": "__main__"}
    ran = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code" or SKIPPED_TAGS & set(cell["metadata"].get("tags", [])):
            continue
        run_cell(source(cell), namespace, env, f"cell {i}")
        ran.append(i)
    assert len(ran) >= 6

    assert namespace["SMOKE"] and namespace["RECIPE"] == "tiny-cpu" and namespace["IMAGES"] is None
    run = tmp_path / "runs" / namespace["NAME"]
    assert (run / "checkpoints" / "step-0000002").is_dir() and (run / "generator.safetensors").is_file()
    grid = tmp_path / f"{namespace['NAME']}-grid.png"
    assert grid.is_file() and (tmp_path / "python-grid.png").is_file()
    # Progress grids were shown while training ran, then the sampled grids.
    shown = [p.name for p in recorder.shown]
    assert shown[:2] == ["step-0000001.png", "step-0000002.png"], shown
    assert shown[2:] == [grid.name, "python-grid.png"], shown
    from PIL import Image

    with Image.open(grid) as image:
        assert image.size[0] > 32 * 4   # 16 images of 32 px, 4 per row, with padding
