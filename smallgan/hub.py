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

from pathlib import Path
from smallgan.errors import SmallganError
from smallgan.offline import offline, offline_vars_set

PREFIX = "hf:"


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
