"""avgzsl: audio-visual generalized zero-shot video classification (MFT, baselines, protocol).

The main entry points are importable from here; each is loaded on first use, so ``import avgzsl`` (and
``avgzsl --help``) stays fast (no torch until needed):

    import avgzsl
    cfg = avgzsl.load_config("mft_ucf", ["epochs=2"])      # a preset name or a YAML path, then --set pairs
    bench = avgzsl.load_benchmark("data/UCF")             # a dataset root or a native folder
    results = avgzsl.run_protocol(cfg, bench, "runs/mft") # stage 1 -> stage 2 -> test; the run folder
    model, ckpt = avgzsl.load_model("runs/mft/checkpoints/stage2_final.pt")
    predictor = avgzsl.Predictor.from_run("runs/mft")
"""
__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "load_config": "avgzsl.config",
    "RunConfig": "avgzsl.config",
    "load_benchmark": "avgzsl.data.benchmark",
    "make_synthetic": "avgzsl.data.synthetic",
    "synthetic_root": "avgzsl.data.synthetic",
    "run_protocol": "avgzsl.protocol",
    "load_model": "avgzsl.checkpoint",
    "Predictor": "avgzsl.predict",
    "list_models": "avgzsl.models",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'avgzsl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
