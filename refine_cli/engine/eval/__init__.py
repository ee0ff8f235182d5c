"""Evaluation: the one confusion-matrix metric and the one evaluator behind every number refine reports.

`metrics.py` holds the metric, `evaluator.py` scores a model or a folder of saved predictions on a
split (at the labels' own resolution), `per_image.py` collects per-image scores, and `report.py` with
`report_figures.py` writes the HTML report; `int8_gate.py` scores fp32 against int8 before `refine export
--int8` writes a file. May import `engine.infer`, `models/`, `data/` and the
shared modules; never `engine.train` or `engine.bench`.
"""
