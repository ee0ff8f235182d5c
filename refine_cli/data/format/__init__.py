"""The unified dataset format every converter writes and every consumer reads.

`unified.py` (the folder layout, meta.json, the writer and reader), `imageio.py` (the one image reader
and label writer, with the pixel limit), `check.py` (`refine check`), `gallery.py` (`check --gallery`)
and `palette.py` (colour lookup tables and overlays). May import only the shared modules.
"""
