"""Turning sources into the unified format: `refine prepare`'s pipeline and every converter.

`pipeline.py` runs a prepare (manifest -> sources -> plan -> parallel conversion -> check) with
`sources.py` and `worker.py`; `registry.py` maps dataset names to converters, `base.py` is the converter
contract and `checks.py` the per-sample checks. `datasets/` holds one converter per public dataset,
`custom/` the converter of own labelled data and its source formats; `shapes.py` draws the synthetic
demo dataset. May import `data.acquire`, `data.format` and the shared modules.
"""
