"""Sampling from trained generators: the Python API behind `smallgan sample`.

    from smallgan import load_generator, save_grid
    G = load_generator("runs/demo")                     # a run folder, generator.safetensors or checkpoint folder
    images = G.sample(64, trunc=0.5, classes="circle", seed=0)   # (64, 3, R, R) uint8 on the CPU
    save_grid(images, "grid.png", nrow=8)

Modules: :mod:`.generator` (loading, latents, classes, batching, standing statistics), :mod:`.images`
(grids, PNG folders, GIFs), :mod:`.figures` (the truncation sweep and interpolation sheets).
"""

from smallgan.sampling.figures import (
    class_interpolation, interpolation_frames, latent_interpolation, truncation_sweep,
)
from smallgan.sampling.generator import TrainedGenerator, latest_run, load_generator, resolve_classes, spread
from smallgan.sampling.images import make_grid, save_folder, save_gif, save_grid, side_by_side, to_pil, to_uint8

__all__ = [
    "TrainedGenerator", "class_interpolation", "interpolation_frames", "latent_interpolation", "latest_run",
    "load_generator", "make_grid", "resolve_classes", "save_folder", "save_gif", "save_grid", "side_by_side",
    "spread", "to_pil", "to_uint8", "truncation_sweep",
]
