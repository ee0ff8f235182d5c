"""Datasets: manifests, downloads, extraction, converters and the unified format they produce.

Import from the submodules (e.g. `refine_cli.data.unified`); this package stays import-light so the
CLI starts fast.
"""
