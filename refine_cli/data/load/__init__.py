"""Feeding training: the torch Dataset over a split, paired augmentation, loaders and input normalisation.

May import `data.format` and the shared modules.
"""
