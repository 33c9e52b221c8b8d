"""benchmarks/gpu_proof.py, the one-call GPU proof, in its dry run: every item at tiny size on the CPU, so the
script a rare and brief GPU session runs has run before, end to end, into one results folder."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_proof


@pytest.mark.slow
def test_gpu_proof_dry_run_writes_every_item_into_one_folder(tmp_path):
    out = gpu_proof.main(["--out", str(tmp_path / "proof"), "--dry-run"])
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    steps = {r["name"]: r for r in rows if r["item"] == "step"}
    assert set(steps) == {"bf16-eager-32px-ch8-b8", "no-eager-32px-ch8-b8", "bf16-compiled-32px-ch8-b8",
                          "no-compiled-32px-ch8-b8"}
    assert all(r["ok"] and r["losses_finite"] and r["img_s"] > 0 for r in steps.values()), steps
    assert steps["bf16-eager-32px-ch8-b8"]["flops_per_iter"] > 0 and "mfu" in steps["bf16-eager-32px-ch8-b8"]
    by_item = {r["item"]: r for r in rows if r["item"] != "step"}
    assert by_item["info"]["ok"] and by_item["pytest"]["ok"] and by_item["fewshot"]["ok"]
    assert by_item["notebook"]["skipped"]
    kid = by_item["fewshot-kid"]["kid"]
    assert kid["step"] == 4 and isinstance(kid["kid"], float)
    summary = (out / "summary.md").read_text()
    assert "bf16-compiled-32px-ch8-b8" in summary and "| fewshot | ok |" in summary
    assert (out / "log.txt").stat().st_size > 0
    # Every result file says which commit and command wrote it.
    assert all(r["commit"] and r["command"].startswith("python -m benchmarks.gpu_proof --out") for r in rows)
    assert summary.startswith("<!-- commit ") and "benchmarks.gpu_proof" in summary.splitlines()[0]
