"""`smallgan prepare` on a small hostile corpus (benchmarks/hostile_corpus.py; the benchmark runs >= 2,000 files):
no crash, every file accounted for exactly once in report.json, the source tree untouched, even while some of
its files are rewritten during the run."""

import json
import os

import pytest
from rich.console import Console

from data_tools.prepare import PrepareOptions, prepare

from benchmarks.hostile_corpus import Mutator, check, make_corpus, snapshot


@pytest.mark.slow
def test_prepare_accounts_for_every_hostile_file_and_leaves_the_source_as_it_was(tmp_path):
    corpus = make_corpus(tmp_path, count=150)
    assert corpus.volatile and corpus.unreadable and len(corpus.candidates) + corpus.ignored >= 150
    before = snapshot(corpus.src)
    mutator = Mutator(corpus.volatile)
    mutator.start()
    try:
        prepare(str(corpus.src), tmp_path / "out", PrepareOptions(resolution=32, workers=2), console=Console(quiet=True))
    finally:
        mutator.stop()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert check(corpus, tmp_path / "out", report) == []
    assert snapshot(corpus.src) == before
    reasons = {f["path"].rsplit("/", 1)[-1]: f["reason"] for f in report["skipped_files"]}
    assert reasons["huge-png.png"] == reasons["bomb-png.png"] == "too_large"      # never decoded whole
    assert reasons["empty.jpg"] == "empty" and reasons["tall.png"] == "too_small"
    assert all(reasons[f"truncated{k}{ext}"] in ("truncated", "corrupt")
               for k, ext in enumerate([".jpg", ".png", ".webp", ".gif", ".tiff", ".bmp"]))
    assert report["symlink_loops"] == 1
    kept = {p.rsplit("/", 1)[-1] for p in corpus.candidates} - set(reasons)
    assert {"huge-jpeg.jpg", "png16.png", "cmyk-jpeg.jpg", "cmyk-tiff.tif", "palette-alpha.png", "apng.png",
            "animated-gif.gif", "animated-webp.webp", "exif-rotated.jpeg"} <= kept
    # chmod 000: skipped as unreadable, unless this runs as root (which reads anything: then it is kept).
    for path in corpus.unreadable:
        expected = None if os.getuid() == 0 else "unreadable"
        assert reasons.get(path.name) == expected
        path.chmod(0o644)                                                           # let tmp_path be removed
