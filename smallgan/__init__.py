"""smallgan: train BigGAN (and a FastGAN baseline) on your own small image set."""

__version__ = "0.1.0"
