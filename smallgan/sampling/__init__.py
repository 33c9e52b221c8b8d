"""Sampling from trained generators: the Python API behind `smallgan sample`.

    from smallgan import load_generator, save_grid
    G = load_generator("runs/demo")                     # a run folder, generator.safetensors or checkpoint folder
    images = G.sample(64, trunc=0.5, classes="circle", seed=0)   # (64, 3, R, R) uint8 on the CPU
    save_grid(images, "grid.png", nrow=8)

Modules: :mod:`.generator` (:class:`TrainedGenerator`: latents, classes, batching, standing statistics),
:mod:`.export` (``generator.safetensors``: writing, finding and loading it), :mod:`.images` (grids, PNG
folders, GIFs), :mod:`.figures` (the truncation sweep and interpolation sheets).
"""

from smallgan.sampling.export import export_generator, latest_run, load_generator
from smallgan.sampling.figures import (
    class_interpolation, interpolation_frames, latent_interpolation, truncation_sweep,
)
from smallgan.sampling.generator import TrainedGenerator, resolve_classes, spread
from smallgan.sampling.images import (
    grid_columns, make_grid, save_folder, save_gif, save_grid, side_by_side, to_pil, to_uint8,
)

__all__ = [
    "TrainedGenerator", "class_interpolation", "export_generator", "grid_columns", "interpolation_frames",
    "latent_interpolation", "latest_run", "load_generator", "make_grid", "resolve_classes", "save_folder",
    "save_gif", "save_grid", "side_by_side", "spread", "to_pil", "to_uint8", "truncation_sweep",
]
