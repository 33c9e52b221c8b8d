"""Sharing on the Hugging Face Hub: `smallgan push` and `hf:USER/NAME` wherever a run is accepted.

huggingface_hub's own code runs (repository creation, pre-upload, commit, snapshot download, its cache layout);
only its HTTP layer is replaced, through its public `set_client_factory`, by a transport that answers as an
in-memory Hub would. Nothing reaches the network."""

from __future__ import annotations

import base64
import importlib
import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from smallgan.cli import app
from smallgan.errors import SmallganError
from tiny import TINY_BASE

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub.utils import _http as hub_http  # noqa: E402

# The HTTP library the installed huggingface_hub uses (httpx, or its successor): the one its own client is made of.
httpx = importlib.import_module(type(hub_http.default_client_factory()).__module__.split(".")[0])

TINY = [*TINY_BASE, "train.batch=4", "train.d_steps=1", "train.sv_every=0"]


class FakeHub:
    """Model repositories in memory, behind the Hub's HTTP API as huggingface_hub calls it."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: dict[str, str] = {}
        self.requests: list[str] = []
        self.online = True

    def __call__(self, request):
        self.requests.append(f"{request.method} {request.url.path}")
        if not self.online:
            raise httpx.ConnectError("no network", request=request)
        path = request.url.path
        if request.method == "POST" and path == "/api/repos/create":
            body = json.loads(request.content)
            repo = f"{body.get('organization') or 'user'}/{body['name']}"
            self.repos.setdefault(repo, {})
            return httpx.Response(200, json={"url": f"https://huggingface.co/{repo}", "name": repo})
        if path == "/api/validate-yaml":      # the model card's metadata, checked before a commit with a README
            return httpx.Response(200, json={"errors": [], "warnings": []})
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", path):
            files = json.loads(request.content)["files"]
            return httpx.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", path):
            return self._commit(m.group(1), request.content)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path):
            return httpx.Response(200, json=[{"type": "file", "path": name, "size": len(data),
                                              "oid": hashlib.sha1(data).hexdigest()}
                                             for name, data in sorted(self.repos[m.group(1)].items())])
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            return self._info(m.group(1))
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._file(m.group(1), m.group(3), request.method)
        return httpx.Response(404, json={"error": f"not handled: {request.method} {path}"})

    def _commit(self, repo: str, content: bytes):
        if repo not in self.repos:
            return httpx.Response(404, headers={"X-Error-Code": "RepoNotFound"}, json={"error": "no repo"})
        for line in content.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                self.repos[repo][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
        sha = hashlib.sha1(json.dumps(sorted(self.repos[repo])).encode() + content).hexdigest()
        self.commits[repo] = sha
        return httpx.Response(200, json={"commitUrl": f"https://huggingface.co/{repo}/commit/{sha}",
                                         "commitOid": sha, "success": True})

    def _info(self, repo: str):
        if repo not in self.commits:
            return httpx.Response(404, headers={"X-Error-Code": "RepoNotFound"}, json={"error": "Repository not found"})
        files = self.repos[repo]
        return httpx.Response(200, json={
            "id": repo, "modelId": repo, "sha": self.commits[repo], "private": False,
            "siblings": [{"rfilename": name, "size": len(data)} for name, data in sorted(files.items())]})

    def _file(self, repo: str, name: str, method: str):
        data = self.repos.get(repo, {}).get(name)
        if data is None:
            return httpx.Response(404, headers={"X-Error-Code": "EntryNotFound"}, json={"error": "no file"})
        headers = {"X-Repo-Commit": self.commits[repo], "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                   "Content-Length": str(len(data))}
        return httpx.Response(200, headers=headers, content=b"" if method == "HEAD" else data)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fresh hub cache, a token, and huggingface_hub talking to a FakeHub."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    for var in ("HF_HUB_OFFLINE", "SMALLGAN_OFFLINE", "HF_DATASETS_OFFLINE"):   # conftest sets them for the others
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    fake = FakeHub()
    huggingface_hub.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(fake)))
    yield fake
    huggingface_hub.set_client_factory(hub_http.default_client_factory)


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    sets = [x for s in [*TINY, f"train.out_dir={out}"] for x in ("--set", s)]
    result = invoke("train", "--recipe", "tiny-cpu", "--max-steps", "2", "--name", "shapes", "--log-with", "none",
                    *sets)
    assert result.exit_code == 0, result.output
    return out / "shapes"


def test_push_uploads_generator_config_card_and_checkpoint_and_hf_names_load_back(hub, trained_run, tmp_path,
                                                                                  monkeypatch):
    from smallgan import load_generator

    result = invoke("push", str(trained_run), "--repo", "alice/shapes-gan", "--license", "cc-by-4.0")
    assert result.exit_code == 0, result.output
    assert "smallgan sample hf:alice/shapes-gan" in result.output
    files = hub.repos["alice/shapes-gan"]
    assert {"generator.safetensors", "config.json", "README.md", "sample.png",
            "checkpoints/step-0000002/G.safetensors", "checkpoints/step-0000002/D.safetensors",
            "checkpoints/step-0000002/state.pt"} <= set(files)
    assert files["generator.safetensors"] == (trained_run / "generator.safetensors").read_bytes()
    card = files["README.md"].decode()
    assert "license: cc-by-4.0" in card and "recipe `tiny-cpu`" in card and "steps: 2" in card
    assert "builtin:shapes" in card and "hf:alice/shapes-gan" in card and "![" in card
    assert len(files["checkpoints/step-0000002/state.pt"]) < (trained_run / "checkpoints" / "step-0000002" /
                                                              "state.pt").stat().st_size   # no optimiser states

    local, pulled = load_generator(trained_run, device="cpu"), load_generator("hf:alice/shapes-gan", device="cpu")
    assert torch.equal(local.sample(4, seed=3), pulled.sample(4, seed=3)) and pulled.step == 2
    assert Path(huggingface_hub.constants.HF_HUB_CACHE) in pulled.path.parents   # downloaded into the hub cache

    monkeypatch.chdir(tmp_path)
    assert invoke("sample", "hf:alice/shapes-gan", "--grid", "--n", "4").exit_code == 0
    assert (tmp_path / "samples" / "sample-t0-s0.png").is_file()    # beside the user, not in the cache

    # --init hf:...: fine-tuning starts from the pushed checkpoint (the model from the source, no recipe).
    from smallgan.cli.run_config import plan_training

    plan = plan_training(None, [f"train.out_dir={tmp_path}"], {"train.init": "hf:alice/shapes-gan",
                                                               "data.path": "builtin:digits"}, "auto", False)
    assert plan.cfg.model.ch == 4 and plan.cfg.train.name == "shapes-gan-finetune"

    # Offline, the cached snapshot still loads; nothing is asked of the network.
    hub.online = False
    asked = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert torch.equal(load_generator("hf:alice/shapes-gan", device="cpu").sample(4, seed=3), local.sample(4, seed=3))
    assert len(hub.requests) == asked


def test_a_run_that_is_not_cached_offline_is_one_line(hub, monkeypatch):
    from smallgan import load_generator

    hub.online = False
    with pytest.raises(SmallganError) as err:
        load_generator("hf:alice/never-pushed")
    message = str(err.value)
    assert message.startswith("hf:alice/never-pushed is not in the Hugging Face cache") and "\n" not in message
    assert "the Hub cannot be reached" in message
    monkeypatch.setenv("SMALLGAN_OFFLINE", "1")
    with pytest.raises(SmallganError, match="SMALLGAN_OFFLINE set; download it once"):
        load_generator("hf:alice/never-pushed")
    hub.online = True
    monkeypatch.delenv("SMALLGAN_OFFLINE")
    with pytest.raises(SmallganError, match="no such model repository on the Hugging Face Hub"):
        load_generator("hf:alice/never-pushed")
    with pytest.raises(SmallganError, match="hf:USER/NAME"):
        load_generator("hf:no-slash")


def test_a_snapshot_in_the_hub_cache_layout_loads_offline(trained_run, tmp_path, monkeypatch):
    """What a download leaves behind (models--USER--NAME/{refs,snapshots}), written by hand: it loads with the
    network off, through huggingface_hub's own cache lookup."""
    from smallgan import load_generator

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--bob--shapes" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "generator.safetensors").write_bytes((trained_run / "generator.safetensors").read_bytes())
    (cache / "models--bob--shapes" / "refs").mkdir()
    (cache / "models--bob--shapes" / "refs" / "main").write_text(commit)
    G = load_generator("hf:bob/shapes", device="cpu")
    assert G.path == snapshot / "generator.safetensors" and G.step == 2


def test_a_push_without_network_is_one_line_and_names_the_fix(hub, trained_run):
    from smallgan.sharing import push_run

    hub.online = False
    with pytest.raises(SmallganError) as err:
        push_run(trained_run, "alice/shapes-gan")
    message = str(err.value)
    assert message.startswith(f"could not push {trained_run} to alice/shapes-gan (") and "\n" not in message
    assert "huggingface-cli login" in message and hub.repos == {}
    with pytest.raises(SmallganError, match="holds no generator.safetensors"):
        push_run(trained_run / "checkpoints", "alice/shapes-gan")
