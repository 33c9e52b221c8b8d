"""Property-based fuzzing of `smallgan prepare` on random and corrupted image bytes.

Whatever the bytes, prepare never raises (beyond a one-line SmallganError when nothing at all is usable),
never writes outside its output folder, never modifies the source, and accounts for every input file.
"""

import hashlib
import io
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from data_tools.prepare import PrepareOptions, prepare

IMAGE_EXTS = [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tiff", ".PNG"]
OTHER_EXTS = [".txt", ".json", ""]


def _valid(seed: int, fmt: str, size: int) -> bytes:
    img = Image.new("RGB", (size, size), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    img.putpixel((seed % size, (seed // 7) % size), (255 - seed % 256, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@st.composite
def file_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["valid", "truncated", "flipped", "random", "empty"]))
    base = _valid(draw(st.integers(0, 10_000)), draw(st.sampled_from(["PNG", "JPEG", "BMP", "GIF"])),
                  draw(st.integers(8, 48)))
    if kind == "valid":
        return base
    if kind == "truncated":
        return base[: draw(st.integers(0, len(base) - 1))]
    if kind == "flipped":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=2048))
    return b""


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(files=st.lists(st.tuples(file_bytes(), st.sampled_from(IMAGE_EXTS + OTHER_EXTS), st.booleans()),
                      min_size=1, max_size=12))
def test_prepare_survives_any_bytes(tmp_path_factory, files):
    work = tmp_path_factory.mktemp("fuzz")
    src = work / "src"
    (src / "sub").mkdir(parents=True)
    names = []
    for i, (data, ext, nested) in enumerate(files):
        path = src / ("sub" if nested else "") / f"f{i}{ext}"
        path.write_bytes(data)
        names.append(path)
    (src / "anchor.png").write_bytes(_valid(1, "PNG", 40))  # one good image, so a dataset is always written
    before = _snapshot(work)
    out = work / "out"

    report = prepare(str(src), out, PrepareOptions(resolution=16, min_size=8, workers=1, labels="none"))

    after = _snapshot(work)
    outside = {k: v for k, v in after.items() if not k.startswith("out/")}
    assert outside == before                                          # source untouched, nothing written elsewhere
    n_image_files = 1 + sum(p.suffix.lower() in {e.lower() for e in IMAGE_EXTS} for p in names)
    assert report.found == n_image_files
    assert report.accounted()                                          # found = used + skipped + duplicates
    listed = {f["path"] for f in report.skipped_files} | {f["path"] for f in report.duplicate_files}
    assert len(listed) == report.found - report.used                   # every rejected file is named
    meta = json.loads((out / "smallgan.json").read_text())
    assert meta["num_images"] == report.used >= 1
