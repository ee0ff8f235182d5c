"""Training: the config of a run, the loop and everything a run folder holds.

`config.py` (the typed config, the train options' table and the recipes), `trainer.py` (the loop),
`step.py` (one optimiser step), `setup.py` (dataset and model), `resume.py` (exact resume),
`optim.py` (optimiser and schedules), `run_files.py` (the run folder), `run_log.py` (TensorBoard and
curves.png), `distributed.py` (torchrun) and `own_data.py` (the plan for `prepare custom` data).
May import `engine.eval`, `engine.infer`, `models/`, `data/` and the shared modules; never `engine.bench`.
"""
