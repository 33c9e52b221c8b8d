"""`smallgan prepare` on fixture folders built here with Pillow: every bad-file kind, classes, duplicates."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from data_tools.prepare import PrepareOptions, prepare, read_meta
from data_tools import images as img
from data_tools.dedupe import Deduper
from smallgan.errors import SmallganError

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Fixtures


def blob(seed: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    """A smooth random picture: near-copies stay within a few pHash bits, other seeds >= 16 bits away."""
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((6, 6, 3)) * 255).astype("uint8")).resize(size, Image.Resampling.BICUBIC)


def png_header(w: int, h: int) -> bytes:
    """A tiny PNG that claims w x h pixels (a decompression bomb is refused before any decoding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def make_source(root: Path) -> Path:
    """23 candidate files: 13 usable, 2 duplicates (perceptual mode), 8 skipped; 2 ignored files."""
    cats, dogs = root / "cats", root / "dogs"
    (dogs / "nested" / "deep").mkdir(parents=True)
    cats.mkdir()
    (root / ".hidden").mkdir()
    a = blob(0)
    a.save(cats / "a.png")
    a.save(cats / "b_copy.png", compress_level=1)                      # same pixels, other bytes: exact dup
    a.resize((60, 60)).save(cats / "c_near.jpg", quality=85)          # perceptual near-duplicate
    exif = Image.Exif()
    exif[0x0112] = 6                                                   # stored sideways, displayed rotated
    blob(1, (96, 48)).save(cats / "d_exif.jpg", exif=exif, quality=95)
    rgba = blob(2).convert("RGBA")
    alpha = np.full((64, 64), 255, np.uint8)
    alpha[:, :32] = 0                                                  # left half fully transparent
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(cats / "e_rgba.png")
    blob(3).quantize(64).save(cats / "f_palette.gif")
    blob(4).convert("CMYK").save(cats / "g_cmyk.jpg")
    g16 = np.asarray(blob(5).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(g16).save(cats / "h_16bit.png")
    blob(6).convert("L").save(cats / "i_gray.png")
    blob(7).convert("LA").save(cats / "j_la.png")
    blob(8).save(cats / "k.webp", lossless=True)
    blob(9).save(cats / "l.bmp")
    blob(10).save(cats / "m.tiff")
    blob(11, (20, 20)).save(cats / "n_small.png")                     # too_small (min-size 32)
    blob(12).save(dogs / "nested" / "deep" / "x.png")
    blob(13, (80, 100)).save(dogs / "p.png")
    (dogs / "empty.jpg").write_bytes(b"")                             # empty
    (dogs / "trunc.jpg").write_bytes(encoded(blob(14), "JPEG")[:400])  # truncated
    (dogs / "trunc.png").write_bytes(encoded(blob(15), "PNG")[:300])   # truncated
    (dogs / "fake.png").write_text("this is not an image\n")         # not_an_image
    (dogs / "bomb.png").write_bytes(png_header(12_000, 12_000))       # too_large: our 128 MP limit
    (dogs / "huge.png").write_bytes(png_header(20_000, 20_000))       # too_large: Pillow's own bomb error
    (dogs / "notes.txt").write_text("ignored\n")
    os.symlink("..", dogs / "loop")                                   # a symlink loop back to the root
    blob(16).save(root / "root.png")                                  # no_class: beside the class folders
    (root / "readme.md").write_text("ignored\n")
    blob(17).save(root / ".hidden" / "z.png")                         # hidden folders are not entered
    return root


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            out[rel] = "link:" + os.readlink(p) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_source(tmp_path_factory.mktemp("faces") / "faces")


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    before = snapshot(source)
    out = tmp_path_factory.mktemp("out") / "faces-prepared"
    report = prepare(source, out, PrepareOptions(resolution=32, dedupe="perceptual", workers=1))
    return source, out, report, before


# ---------------------------------------------------------------------------------------------
# The end-to-end preparation


def test_report_counts_every_file(prepared):
    _, out, report, _ = prepared
    saved = json.loads((out / "report.json").read_text())
    assert saved["found"] == 23 and saved["used"] == 13 and saved["ignored"] == 2
    expected_skips = {"too_small": 1, "empty": 1, "truncated": 2, "not_an_image": 1, "too_large": 2, "no_class": 1}
    assert {k: v for k, v in saved["skipped"].items() if v} == expected_skips
    assert saved["duplicates"] == {"duplicate_exact": 1, "duplicate_perceptual": 1}
    assert saved["per_class"] == {"cats": 11, "dogs": 2}
    assert saved["symlink_loops"] == 1 and saved["hidden_dirs"] == 1
    assert report.accounted()
    reasons = {f["path"]: f["reason"] for f in saved["skipped_files"]}
    assert reasons["dogs/bomb.png"] == reasons["dogs/huge.png"] == "too_large"
    assert reasons["dogs/trunc.jpg"] == "truncated" and reasons["root.png"] == "no_class"
    dups = {d["path"]: (d["kind"], d["kept"]) for d in saved["duplicate_files"]}
    assert dups == {
        "cats/b_copy.png": ("duplicate_exact", "cats/a.png"),
        "cats/c_near.jpg": ("duplicate_perceptual", "cats/a.png"),
    }


def test_dataset_rows_labels_and_resolution(prepared):
    _, out, _, _ = prepared
    ds = datasets.load_from_disk(str(out))
    assert len(ds) == 13
    assert ds.features["label"].names == ["cats", "dogs"]
    assert all(im.size == (32, 32) and im.mode == "RGB" for im in ds["image"])
    labels = dict(zip(ds["source"], ds["label"]))
    assert labels["cats/a.png"] == 0 and labels["dogs/nested/deep/x.png"] == 1
    assert list(ds["source"]) == sorted(ds["source"], key=lambda p: p.split("/"))  # stable order
    meta = read_meta(out)
    assert meta["resolution"] == 32 and meta["class_names"] == ["cats", "dogs"] and meta["num_images"] == 13
    assert meta["options"]["dedupe"] == "perceptual"
    # Transparent left half composited on the default white background.
    rgba = np.asarray(ds[list(ds["source"]).index("cats/e_rgba.png")]["image"])
    assert (rgba[:, :12] == 255).all() and rgba[:, 20:].mean() < 250


def test_source_unchanged_and_second_run_refused(prepared):
    source, out, _, before = prepared
    assert snapshot(source) == before
    with pytest.raises(SmallganError, match="already exists; pass --force"):
        prepare(source, out, PrepareOptions(resolution=32, workers=1))
    stamp = (out / "smallgan.json").stat().st_mtime_ns
    prepare(source, out, PrepareOptions(resolution=32, dedupe="off", workers=1), force=True)
    assert read_meta(out)["num_images"] == 15 and (out / "smallgan.json").stat().st_mtime_ns != stamp
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    assert snapshot(source) == before


def test_workers_give_identical_datasets(source, tmp_path):
    opts = dict(resolution=32, dedupe="perceptual", crop="random")
    two = prepare(source, tmp_path / "two", PrepareOptions(workers=2, **opts))
    one = prepare(source, tmp_path / "one", PrepareOptions(workers=1, **opts))
    assert two.duplicate_files == one.duplicate_files and two.skipped_files == one.skipped_files
    a, b = (datasets.load_from_disk(str(tmp_path / n)).cast_column("image", datasets.Image(decode=False))
            for n in ("two", "one"))
    assert list(a["source"]) == list(b["source"]) and list(a["label"]) == list(b["label"])
    assert [r["bytes"] for r in a["image"]] == [r["bytes"] for r in b["image"]]


def test_labels_none_and_exact_dedupe(source, tmp_path):
    report = prepare(source, tmp_path / "o", PrepareOptions(resolution=32, labels="none", workers=1))
    assert list(report.per_class) == ["faces"]
    # root.png now belongs to the single class; the JPEG near-copy is kept by exact dedupe.
    assert report.used == 15 and report.duplicates == {"duplicate_exact": 1, "duplicate_perceptual": 0}
    assert report.skipped["no_class"] == 0


def test_only_bad_files_is_an_error(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.jpg").write_bytes(b"")
    with pytest.raises(SmallganError, match="no usable images"):
        prepare(tmp_path / "src", tmp_path / "out", PrepareOptions(workers=1), console=_quiet())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "field,value,message",
    [("crop", "diagonal", "--crop must be"), ("dedupe", "fuzzy", "--dedupe must be"),
     ("background", "blue", "--background must be"), ("resolution", 3, "--resolution must be")],
)
def test_bad_options_are_one_line_errors(field, value, message, tmp_path):
    with pytest.raises(SmallganError, match=message) as e:
        prepare(None, tmp_path / "o", PrepareOptions(**{field: value}), builtin="shapes")
    assert "\n" not in str(e.value)


def test_errors_inside_the_row_generator_reach_the_user(tmp_path, monkeypatch):
    import data_tools.prepare as pipeline

    def die(chunk, settings):
        raise SmallganError("a worker process died while decoding one of x .. y")

    monkeypatch.setattr(pipeline, "process_batch", die)
    with pytest.raises(SmallganError, match="worker process died"):  # not datasets' wrapper exception
        prepare(None, tmp_path / "o", PrepareOptions(workers=1), builtin="shapes", console=_quiet())
    assert not (tmp_path / "o").exists() and not list(tmp_path.iterdir())


def test_a_crashed_worker_process_is_an_error_not_a_hang(tmp_path, monkeypatch):
    from data_tools.prepare import _results
    from data_tools.worker import FileItem, Settings

    # A path whose __fspath__ kills the worker process, as a segfaulting decoder would.
    (tmp_path / "crashing_path.py").write_text(
        "import os\nclass Boom:\n    def __fspath__(self):\n        os._exit(3)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit sys.path
    from crashing_path import Boom

    items = [FileItem(f"{i}.png", Boom(), 0) for i in range(40)]
    settings = Settings(32, "center", 8, "off", (0, 0, 0), 10**6)
    with pytest.raises(SmallganError, match="worker process died while decoding one of 0.png"):
        list(_results(iter(items), settings, workers=2))


def test_out_may_not_replace_the_source(source):
    with pytest.raises(SmallganError, match="replace the source"):
        prepare(source, source, PrepareOptions(workers=1), force=True)


# ---------------------------------------------------------------------------------------------
# Decoding, conversion, resizing


def test_decode_applies_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = blob(1, (96, 48))
    im, size = img.decode(io.BytesIO(encoded(stored, "PNG", exif=exif)))
    assert size == (48, 96) and im.size == (48, 96)
    expected = np.asarray(stored.transpose(Image.Transpose.ROTATE_270), dtype=int)
    assert np.abs(np.asarray(im, dtype=int) - expected).max() == 0


def test_decode_converts_16bit_cmyk_and_palette():
    g8 = np.asarray(blob(5).convert("L"))
    im, _ = img.decode(io.BytesIO(encoded(Image.fromarray(g8.astype(np.uint16) * 257), "PNG")))
    assert im.mode == "RGB" and np.array_equal(np.asarray(im)[..., 0], g8)  # rescaled, not clipped to white
    for source in (blob(4).convert("CMYK"), blob(3).quantize(16), blob(6).convert("LA")):
        im, _ = img.decode(io.BytesIO(encoded(source, "TIFF")))
        assert im.mode == "RGB" and im.size == (64, 64)


def test_decode_skip_reasons():
    cases = {
        img.NOT_AN_IMAGE: b"hello",
        img.TRUNCATED: encoded(blob(0), "JPEG")[:300],
        img.TOO_LARGE: png_header(12_000, 12_000),
    }
    for reason, data in cases.items():
        with pytest.raises(img.SkipImage) as e:
            img.decode(io.BytesIO(data))
        assert e.value.reason == reason
    with pytest.raises(img.SkipImage, match="too_large"):
        img.decode(io.BytesIO(encoded(blob(0), "PNG")), max_pixels=1000)


def test_square_crops():
    wide = blob(0, (120, 60))
    assert img.square(wide, 32, "center").size == (32, 32)
    padded = np.asarray(img.square(wide, 32, "none", background=(0, 0, 0)))
    assert (padded[:8] == 0).all() and (padded[-8:] == 0).all() and padded[16].mean() > 0
    a = img.square(wide, 32, "random", seed="0:x.png").tobytes()
    assert a == img.square(wide, 32, "random", seed="0:x.png").tobytes()
    assert any(a != img.square(wide, 32, "random", seed=f"0:{i}").tobytes() for i in range(5))


def test_deduper_radius_and_order():
    d = Deduper("perceptual", radius=4)
    assert d.check(0, b"a", 0b1111) is None
    m = d.check(1, b"b", 0b1111 ^ (0b1111 << 40))  # 4 bits apart, in other bands
    assert m is not None and m.kind == "duplicate_perceptual" and m.kept == 0 and m.distance == 4
    assert d.check(2, b"c", 0b1111 ^ (0b11111 << 40)) is None  # 5 bits: a different image
    assert d.check(3, b"a", 1 << 63).kind == "duplicate_exact"


def test_walk_handles_symlink_loops_and_order(tmp_path):
    from data_tools.walk import walk_images

    (tmp_path / "b").mkdir()
    (tmp_path / "a-b").mkdir()
    for p in ["b/2.png", "b/1.PNG", "a-b/0.jpg", "0.txt"]:
        (tmp_path / p).write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "b" / "up")
    w = walk_images(tmp_path)
    assert w.files == ["a-b/0.jpg", "b/1.PNG", "b/2.png"] and w.ignored == 1 and w.symlink_loops == 1


# ---------------------------------------------------------------------------------------------
# Built-in set, Hugging Face inputs, CLI


def test_builtin_shapes(tmp_path):
    report = prepare(None, tmp_path / "shapes", PrepareOptions(resolution=32, workers=1), builtin="shapes")
    assert report.used == 600 and report.per_class == {"circle": 200, "square": 200, "triangle": 200}
    ds = datasets.load_from_disk(str(tmp_path / "shapes"))
    first = np.asarray(ds[0]["image"])
    assert first.shape == (32, 32, 3) and len(np.unique(first.reshape(-1, 3), axis=0)) > 2  # antialiased edges
    assert report.seconds < 20


def test_imagefolder_and_prepared_dataset_as_source(tmp_path):
    src = tmp_path / "imf"
    for c, seeds in {"ants": (0, 1, 2), "bees": (3, 4)}.items():
        (src / c).mkdir(parents=True)
        for s in seeds:
            blob(s).save(src / c / f"{s}.png")
    report = prepare(f"imagefolder:{src}", tmp_path / "hf", PrepareOptions(resolution=32, workers=1))
    assert report.used == 5 and report.per_class == {"ants": 3, "bees": 2}
    again = prepare(str(tmp_path / "hf"), tmp_path / "hf16", PrepareOptions(resolution=16, min_size=16, workers=1))
    assert again.used == 5 and again.per_class == {"ants": 3, "bees": 2}
    ds = datasets.load_from_disk(str(tmp_path / "hf16"))
    assert ds[0]["image"].size == (16, 16)
    assert list(ds["source"]) == ["ants/0.png", "ants/1.png", "ants/2.png", "bees/3.png", "bees/4.png"]


def test_hub_name_offline_is_a_clear_error(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    code = (
        "from data_tools.prepare import prepare, PrepareOptions\n"
        "from smallgan.errors import SmallganError\n"
        "try:\n    prepare('someone/no-such-dataset', None, PrepareOptions(workers=1))\n"
        "except SmallganError as e:\n    print('ERR', e)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_with_repo(env), capture_output=True,
                         text=True, timeout=120)
    line = run.stdout.strip()
    assert line.startswith("ERR no folder someone/no-such-dataset here, and could not load Hugging Face dataset")
    assert "offline" in line
    assert "\n" not in line


def test_cli_end_to_end(source, tmp_path):
    from typer.testing import CliRunner

    import smallgan.cli.prepare  # noqa: F401  (registers the command)
    from smallgan.cli.app import app

    out = tmp_path / "cli-out"
    args = ["prepare", str(source), "--out", str(out), "--resolution", "32", "--workers", "1", "--dedupe", "perceptual"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "report.json").read_text())["used"] == 13
    again = CliRunner().invoke(app, args)
    assert isinstance(again.exception, SmallganError) and "--force" in str(again.exception)


def _with_repo(env: dict[str, str]) -> dict[str, str]:
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def _quiet():
    from rich.console import Console

    return Console(quiet=True)
