"""Dataset preparation for smallgan: image folders, built-in procedural sets and Hugging Face datasets
-> a ``save_to_disk`` dataset of square PNGs at one resolution.

Entry point: :func:`data_tools.prepare.prepare` with :class:`data_tools.prepare.PrepareOptions`.
Nothing is imported here, so pool workers load only what they use; this package never imports
torch or the training code.
"""
