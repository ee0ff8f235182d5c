"""Inference: everything between a model file and label maps, shared by eval, predict, export and bench.

Here live the one inference loop (`loop.py`: batches -> TTA -> CRF -> labels, for PyTorch and ONNX
Runtime backends), test-time augmentation (`tta.py`: multi-scale, flip, tiles), the dense CRF
(`crf.py`), model preparation for inference (`model_prep.py`: BN folding, precision, compile), the
predictor for image files (`predictor.py`), and ONNX (`onnx_backend.py`: metadata and sessions;
`export.py`). May import `models/`, `data/` and the shared modules; no other engine package.
"""
