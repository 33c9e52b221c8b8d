"""smallgan's benchmarks: scripts that print figures (and write result files), run from the repository root as
modules, e.g. ``python -m benchmarks.bench_train``. :mod:`.common` holds what they share (the stamp of every
result file, the budgeted subprocess runner); the step timer, the peak-memory reading and the synthetic images
are :mod:`smallgan.bench`'s, the same that ``smallgan bench`` uses."""
