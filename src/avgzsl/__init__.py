"""avgzsl: audio-visual generalized zero-shot video classification (MFT, baselines, protocol)."""
__version__ = "0.1.0"
