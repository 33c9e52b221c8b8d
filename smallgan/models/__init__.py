"""The built-in architectures: BigGAN (:mod:`.biggan`), BigGAN-deep (:mod:`.biggan_deep`) and the FastGAN
baseline (:mod:`.fastgan`), each built from :class:`~smallgan.models.config.ModelConfig`.

:mod:`smallgan.registry` lists them and builds them by ``model.arch``.
"""
