"""Building blocks of the BigGAN models: one idea a module."""
