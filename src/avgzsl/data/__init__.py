"""Benchmark data: reading the ClipClap/AVCA-GZSL layout, the native format, the in-memory types."""
from .benchmark import convert, load_benchmark
from .types import STAGE_FOLDERS, Benchmark, FeatureDims, Split

__all__ = ["load_benchmark", "convert", "Benchmark", "Split", "FeatureDims", "STAGE_FOLDERS"]
