"""Datasets, from the internet to training batches, one package per stage.

`acquire/` gets source files (manifests, verified downloads, safe extraction, the Cityscapes login);
`convert/` turns them into the unified format (`prepare`'s pipeline, per-dataset converters, own data);
`format/` is the unified format itself (reading, writing, checking, the image reader, palettes);
`load/` feeds training (torch Dataset, augmentation, loaders, normalisation). Data flows one way:
acquire -> convert -> format <- load. May import the shared modules (`refine_cli/*.py`), never
`models/`, `engine/` or `cli/`. This package stays import-light so the CLI starts fast.
"""
