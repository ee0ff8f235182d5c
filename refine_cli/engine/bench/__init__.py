"""Speed and size: `refine bench` and the model catalogue of `refine models`.

`benchmark.py` times models (latency, throughput, memory), `runtimes.py` picks and checks the
runtimes, `onnx_timing.py` builds the ONNX Runtime and OpenVINO steps, `plot.py` draws latency against
cost, `complexity.py` counts parameters and MACs, `memory.py` reads peak memory, `cpu_tuning.py` keeps
glibc's allocator from trimming between passes, and `catalog.py` lists the models. May import
`engine.infer`, `models/`, `data/` and the shared modules; never `engine.eval` or `engine.train`.
"""
