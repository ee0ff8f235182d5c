"""Inference: everything between a model file and label maps, shared by eval, predict, export and bench.

Here live the one inference loop (`loop.py`: batches -> TTA -> CRF -> labels, for PyTorch, ONNX
Runtime and OpenVINO backends), test-time augmentation (`tta.py`: multi-scale, flip, tiles), the dense CRF
(`crf.py`), model preparation for inference (`model_prep.py`: BN folding, precision, compile), the
predictor for image files (`predictor.py`) and for videos and cameras (`video.py`), ONNX
(`onnx_backend.py`: metadata and sessions; `export.py`), OpenVINO (`openvino_backend.py`) and int8
quantisation (`quantize.py`; its accuracy gate is `engine/eval/int8_gate.py`). May import `models/`,
`data/` and the shared modules; no other engine package.
"""
