"""Runs on the Hugging Face Hub: ``smallgan push`` uploads a run's generator with a model card, and
``hf:USER/NAME`` names a pushed run wherever a run folder is accepted (``smallgan sample``, ``smallgan eval``,
``--init``, :func:`~smallgan.sampling.load_generator`).

A pushed repository is a small run folder: ``generator.safetensors`` (the EMA generator with its config and class
names in the metadata: all that sampling needs), ``config.json``, ``best/`` when evaluation kept a best generator,
and, unless asked not to, the newest checkpoint's G, D and EMA weights (``checkpoints/step-*``, without the
optimiser states) so that ``--init hf:USER/NAME`` fine-tunes from it. Everything is safetensors or JSON: loading a
pushed run never executes code. Downloads go through ``huggingface_hub`` into its cache (``HF_HOME``), once; the
cached snapshot is used offline.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from smallgan.errors import SmallganError
from smallgan.offline import offline, offline_vars_set

PREFIX = "hf:"
# What a pushed checkpoint folder keeps: the weights and what describes them, not the optimiser states.
CHECKPOINT_FILES = ("G.safetensors", "D.safetensors", "G_ema.safetensors", "config.json", "class_names.json")


def is_hub(source: object) -> bool:
    """Whether `source` names a run on the Hub (``hf:USER/NAME``, optionally ``@REVISION``)."""
    return isinstance(source, (str, Path)) and str(source).startswith(PREFIX)


def _repo(source: str) -> tuple[str, str | None]:
    repo, _, revision = source[len(PREFIX):].partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise SmallganError(f"{source}: a run on the Hub is hf:USER/NAME (optionally @REVISION)")
    return repo, revision or None


def resolve_run(source: str | Path) -> Path:
    """A local path as it is; ``hf:USER/NAME`` -> the folder of its snapshot in the Hugging Face cache, downloaded
    on first use. Offline (no network, or SMALLGAN_OFFLINE / HF_HUB_OFFLINE set) the cached snapshot is used; when
    there is none, one line says so."""
    if not is_hub(source):
        return Path(source)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    source = str(source)
    repo, revision = _repo(source)
    try:
        return Path(snapshot_download(repo_id=repo, revision=revision, local_files_only=offline()))
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise SmallganError(f"{source}: no such model repository{' revision' if revision else ''} on the Hugging "
                            f"Face Hub ({type(e).__name__}; a private one needs `huggingface-cli login`)") from None
    except LocalEntryNotFoundError:
        from huggingface_hub.constants import HF_HUB_CACHE

        why = f"{', '.join(offline_vars_set())} set" if offline() else "the Hub cannot be reached"
        raise SmallganError(f"{source} is not in the Hugging Face cache ({HF_HUB_CACHE}) and {why}; download it "
                            "once with a network connection, or pass a local run folder") from None


def push_run(run: str | Path, repo: str, *, license: str = "", private: bool = False, token: str | None = None,
             with_checkpoint: bool = True, message: str | None = None) -> str:
    """Upload run folder `run` to model repository `repo` (created when missing); returns the repository's URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from smallgan.checkpoint import latest_checkpoint
    from smallgan.model_card import model_card, sample_grid_png
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
        files.update({f"checkpoints/{checkpoint.name}/{f}": checkpoint / f for f in CHECKPOINT_FILES
                      if (checkpoint / f).is_file()})
        files[f"checkpoints/{checkpoint.name}/state.pt"] = _weights_only_state(checkpoint)
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


def _weights_only_state(checkpoint: Path) -> bytes:
    """The checkpoint's state.pt without optimiser and loss-scaler states: what --init reads (its format version
    and step), a fraction of the size. Loaded with torch.load(weights_only=True) like every state.pt."""
    import torch

    full = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=True)
    kept = {k: full[k] for k in ("format_version", "step", "data") if k in full}
    with tempfile.TemporaryFile() as f:
        torch.save(kept, f)
        f.seek(0)
        return f.read()
