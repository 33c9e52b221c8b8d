"""smallgan.data: resolve a dataset path, load a prepared set once into uint8, float view in [-1, 1]."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import torch
from rich.console import Console

from data_tools.builtin import render_shape
from smallgan.data import PreparedImages, load_prepared, resolve_dataset, to_float
from smallgan.errors import SmallganError

QUIET = Console(quiet=True)


@pytest.fixture(scope="module")
def shapes32(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return resolve_dataset("builtin:shapes", 32, cache_dir=cache, console=QUIET), cache


def test_to_float_range():
    x = torch.tensor([0, 127, 255], dtype=torch.uint8)
    assert torch.allclose(to_float(x), torch.tensor([-1.0, 127 / 127.5 - 1, 1.0]))
    assert x.tolist() == [0, 127, 255]  # the uint8 source is not modified


def test_builtin_is_cached_and_reused(shapes32):
    path, cache = shapes32
    assert path == cache / "builtin" / "shapes-32"
    stamp = (path / "smallgan.json").stat().st_mtime_ns
    assert resolve_dataset("builtin:shapes", 32, cache_dir=cache, console=QUIET) == path
    assert (path / "smallgan.json").stat().st_mtime_ns == stamp


def test_env_var_sets_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SMALLGAN_CACHE", str(tmp_path / "c"))
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(3):
        render_shape(i, 48)[0].save(src / f"{i}.png")
    path = resolve_dataset(str(src), 32, console=QUIET)
    assert path.parent == tmp_path / "c" / "folders"


def test_load_prepared_decodes_once_without_loss(shapes32):
    path, _ = shapes32
    data = load_prepared(path)
    assert isinstance(data, PreparedImages) and len(data) == 600
    assert data.images.dtype == torch.uint8 and data.images.shape == (600, 3, 32, 32)
    assert data.resolution == 32 and data.class_names == ["circle", "square", "triangle"]
    assert torch.bincount(data.labels).tolist() == [200, 200, 200]
    # PNG is lossless: row 4 is exactly the procedural image the generator drew.
    expected, label = render_shape(4, 32)
    assert np.array_equal(data.images[4].permute(1, 2, 0).numpy(), np.asarray(expected))
    assert data.labels[4].item() == label
    x, y = data[4]
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1 and y.item() == label


def test_flip_is_random_and_only_horizontal(shapes32):
    path, _ = shapes32
    data = load_prepared(path, flip=True)
    plain = to_float(data.images[7])
    torch.manual_seed(0)
    seen = {torch.equal(data[7][0], plain.flip(-1)) for _ in range(30)}
    assert seen == {True, False}
    assert all(torch.equal(x, plain) or torch.equal(x, plain.flip(-1)) for x in (data[7][0] for _ in range(10)))


def test_other_resolution_is_resized_and_logged(shapes32, caplog):
    path, _ = shapes32
    with caplog.at_level(logging.WARNING, logger="smallgan.data"):
        data = load_prepared(path, resolution=16)
    assert data.images.shape == (600, 3, 16, 16) and data.resolution == 16
    assert "resizing to 16 px" in caplog.text


def test_raw_folder_is_prepared_then_refreshed_when_it_changes(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    for i in range(4):
        render_shape(i, 48)[0].save(src / f"{i}.png")
    cache = tmp_path / "cache"
    path = resolve_dataset(str(src), 32, cache_dir=cache, console=QUIET)
    assert path.is_relative_to(cache) and len(load_prepared(path)) == 4
    assert resolve_dataset(str(src), 32, cache_dir=cache, console=QUIET) == path
    render_shape(9, 48)[0].save(src / "9.png")
    assert len(load_prepared(resolve_dataset(str(src), 32, cache_dir=cache, console=QUIET))) == 5
    assert resolve_dataset(str(path), 32, cache_dir=cache) == path  # a prepared folder is used as is


def test_imagefolder_source_is_prepared_once(tmp_path):
    src = tmp_path / "imf"
    for i in range(4):
        (src / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        render_shape(i, 40)[0].save(src / f"c{i % 2}" / f"{i}.png")
    path = resolve_dataset(f"imagefolder:{src}", 32, cache_dir=tmp_path / "cache", console=QUIET)
    assert path.parent == tmp_path / "cache" / "hf"
    data = load_prepared(path)
    assert data.class_names == ["c0", "c1"] and data.labels.tolist() == [0, 0, 1, 1]
    assert resolve_dataset(f"imagefolder:{src}", 32, cache_dir=tmp_path / "cache", console=QUIET) == path


def test_bad_paths_are_one_line_errors(tmp_path):
    with pytest.raises(SmallganError, match="does not exist"):
        resolve_dataset(str(tmp_path / "nope"), 32, cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(SmallganError, match="contains no images"):
        resolve_dataset(str(tmp_path / "empty"), 32, cache_dir=tmp_path)
    with pytest.raises(SmallganError, match="not a prepared dataset"):
        load_prepared(tmp_path / "empty")
    with pytest.raises(SmallganError, match="unknown built-in"):
        resolve_dataset("builtin:nothing", 32, cache_dir=tmp_path, console=QUIET)


def test_empty_prepared_dataset_is_refused(shapes32, tmp_path):
    import datasets

    path, _ = shapes32
    datasets.load_from_disk(str(path)).select([]).save_to_disk(str(tmp_path / "empty"))
    meta = json.loads((path / "smallgan.json").read_text())
    (tmp_path / "empty" / "smallgan.json").write_text(json.dumps(dict(meta, num_images=0)))
    with pytest.raises(SmallganError, match="is empty"):
        load_prepared(tmp_path / "empty")


def test_images_must_be_uint8_nchw():
    with pytest.raises(ValueError):
        PreparedImages(torch.zeros(2, 32, 32, 3, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), ["a"])


def test_builtin_digits_are_scikit_learns_labelled_images(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    path = resolve_dataset("builtin:digits", 32, cache_dir=tmp_path, console=QUIET)
    data = load_prepared(path)
    digits = load_digits()
    assert len(data) == 1797 and data.class_names == [str(d) for d in range(10)]
    assert data.labels.tolist() == digits.target.tolist()          # labels from the data, not cycled
    # White strokes on black: the brightest pixels of each image sit where the 8x8 source is brightest.
    small = torch.nn.functional.avg_pool2d(data.images[:50, :1].float(), 4)[:, 0]
    source = torch.from_numpy(digits.images[:50]).float()
    corr = torch.corrcoef(torch.stack([small.flatten(), source.flatten()]))[0, 1]
    assert corr > 0.9


def test_flip_is_recorded_by_prepare_and_followed_by_training(tmp_path):
    from data_tools.prepare import PrepareOptions, prepare, read_meta
    from smallgan.training.loop import resolve_flip

    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(3):
        render_shape(i, 48)[0].save(src / f"{i}.png")
    plain, mirrored = tmp_path / "plain", tmp_path / "mirrored"
    prepare(src, plain, PrepareOptions(resolution=32, workers=1), console=QUIET)
    prepare(src, mirrored, PrepareOptions(resolution=32, workers=1, flip=True), console=QUIET)
    assert read_meta(plain)["flip"] is False and read_meta(mirrored)["flip"] is True
    assert resolve_flip("dataset", plain) is False and resolve_flip("dataset", mirrored) is True
    assert resolve_flip("true", plain) is True and resolve_flip("false", mirrored) is False
    assert resolve_flip("dataset", None) is False                    # in-memory data (benchmarks): no flips


def test_builtin_photos_are_crops_of_scikit_images_colour_photographs(tmp_path):
    pytest.importorskip("skimage")
    from data_tools.builtin import PHOTO_CLASSES, render_photo

    for resolution in (32, 64):
        data = load_prepared(resolve_dataset("builtin:photos", resolution, cache_dir=tmp_path, console=QUIET))
        assert len(data) == 200 and data.resolution == resolution          # a few-shot set, none skipped
        assert data.class_names == list(PHOTO_CLASSES)
        assert data.labels.tolist() == [i % len(PHOTO_CLASSES) for i in range(200)]
    # Deterministic: the prepared images are the renderer's, and the renderer is a pure function of the index.
    again, label = render_photo(7, resolution)
    assert label == 7 % len(PHOTO_CLASSES)
    assert torch.equal(data.images[7], torch.from_numpy(np.asarray(again)).permute(2, 0, 1))
    # Colour photographs, not grey: on average the channels of a pixel differ.
    x = data.images.float()
    assert (x.max(1).values - x.min(1).values).mean() > 20
    # Distinct crops: no image copies another (the smooth retina and night sky come nearest, a mean absolute
    # gap of ~3 grey levels), and the typical image is far from its nearest neighbour.
    flat = x.flatten(1)
    gaps = torch.cdist(flat, flat, p=1) / flat.shape[1]
    gaps.fill_diagonal_(float("inf"))
    assert gaps.min() > 2 and gaps.min(1).values.median() > 15


def test_builtin_photos_without_scikit_image_is_one_clear_error(tmp_path, monkeypatch):
    from data_tools import builtin

    monkeypatch.setitem(sys.modules, "skimage", None)     # `import skimage.data` now raises ImportError
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    builtin._photos.cache_clear()
    try:
        with pytest.raises(SmallganError, match="builtin:photos needs scikit-image.*pip install scikit-image"):
            resolve_dataset("builtin:photos", 32, cache_dir=tmp_path, console=QUIET)
    finally:
        builtin._photos.cache_clear()
