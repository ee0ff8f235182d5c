"""Getting source files: manifests, resumable checksummed downloads, safe extraction, the Cityscapes login.

May import only the shared modules (`refine_cli/*.py`).
"""
