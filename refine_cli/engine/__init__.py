"""Engines that run models, one package per job: infer, eval, train and bench.

Dependencies run one way: `infer` <- `eval` <- `train`, and `infer` <- `bench`. Every engine may use
`models/`, `data/` and the shared modules (`refine_cli/*.py`); none imports `cli/`. The contracts in
pyproject.toml (import-linter, run by `make lint` and the tests) hold the code to this.
Importing a package here stays cheap; each module imports torch itself.
"""
