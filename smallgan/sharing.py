"""`smallgan push`: a run folder -> a model repository on the Hugging Face Hub (what it holds: smallgan/hub.py)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from smallgan.errors import SmallganError
from smallgan.hub import PREFIX, _repo


def push_run(run: str | Path, repo: str, *, license: str = "", private: bool = False, token: str | None = None,
             with_checkpoint: bool = True, message: str | None = None) -> str:
    """Upload run folder `run` to model repository `repo` (created when missing); returns the repository's URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from smallgan.checkpoint import shared_files
    from smallgan.model_card import model_card, sample_grid_png
    from smallgan.runs import latest_checkpoint
    from smallgan.sampling.export import GENERATOR_FILE, load_generator

    run = Path(run)
    _repo(f"{PREFIX}{repo}")                       # USER/NAME, refused in one line otherwise
    if not (run / GENERATOR_FILE).is_file():
        raise SmallganError(f"{run} holds no {GENERATOR_FILE}; push a run folder that has trained (runs/NAME)")
    G = load_generator(run, device="cpu")
    files: dict[str, Any] = {GENERATOR_FILE: run / GENERATOR_FILE, "config.json": G.config.to_json().encode(),
                             "sample.png": sample_grid_png(G)}
    for name in ("generator.safetensors", "best.json"):
        if (run / "best" / name).is_file():
            files[f"best/{name}"] = run / "best" / name
    checkpoint = latest_checkpoint(run) if with_checkpoint else None
    if checkpoint is not None:
        files.update({f"checkpoints/{checkpoint.name}/{f}": content for f, content in shared_files(checkpoint).items()})
    files["README.md"] = model_card(run, G, repo, license=license, files=sorted(files)).encode()
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=content if isinstance(content, Path)
                                         else io.BytesIO(content)) for name, content in files.items()]
        api.create_commit(repo, operations, commit_message=message or f"smallgan push of {run.name} (step {G.step})")
    except Exception as e:  # noqa: BLE001 - filtered: network, authentication and permission errors only
        if not _hub_or_network_error(e):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        raise SmallganError(f"could not push {run} to {repo} ({type(e).__name__}: {first}); check the network and "
                            "`huggingface-cli login` (or HF_TOKEN)") from None
    return str(url)


def _hub_or_network_error(e: BaseException) -> bool:
    """An error the user fixes (HTTP status, authentication, connection), raised by the Hub client or its HTTP
    library (httpx, or its successor: named by module so that either is recognised)."""
    from huggingface_hub.errors import HfHubHTTPError

    return isinstance(e, (HfHubHTTPError, OSError)) or type(e).__module__.split(".")[0].startswith("httpx")

