"""The class-embeddings file: class names with one embedding each, and the encoder and space that made them.

A model can only use class embeddings from the text space it was trained with. Every embeddings
file therefore records its encoder, text space and dim (``ClassEmbeddings``);
``src/avgzsl/predict.py`` compares them with the checkpoint's ``text_space`` and refuses a mismatch
(``avgzsl.spaces.TextSpaceError``). Two forms: ``X.npy`` (C, D) float32 with ``X.json`` beside it,
or a native-format folder (``src/avgzsl/data/native.py``); a native benchmark folder also reads as
class embeddings (its classes with text, in the benchmark's text space).
"""
from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.native import is_native, load_native, write_native
from ..data.safe_pickle import load_npy_safely
from ..data.types import empty_benchmark
from ..errors import AvgzslError
from ..io import atomic_write, write_json
from ..spaces import text_space_name
from .text import TextEncoder, get_encoder
from .towers import EncoderError

__all__ = ["EMBEDDINGS_FORMAT", "ClassEmbeddings", "embed_classes"]

EMBEDDINGS_FORMAT = "avgzsl-class-embeddings"


@dataclass
class ClassEmbeddings:
    """Class names with one embedding each, and the encoder / text space that made them."""

    names: list[str]
    vectors: np.ndarray  # (C, D) float32
    encoder: str
    space: str
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.names):
            raise AvgzslError(f"class embeddings: {len(self.names)} names but vectors of shape {self.vectors.shape}")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.names)

    def meta(self) -> dict:
        return {"format": EMBEDDINGS_FORMAT, "format_version": 1, "encoder": self.encoder, "space": self.space,
                "dim": self.dim, "names": list(self.names), "info": self.info}

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """``X.npy``: (C, D) float32 plus ``X.json`` (names, encoder, space, dim, provenance). Any other
        path: a native-format folder (class_names, text.npy; encoder and space in the manifest's info)."""
        path = Path(path)
        if path.suffix in (".npy", ".json"):
            npy, meta = path.with_suffix(".npy"), path.with_suffix(".json")
            for p in (npy, meta):
                if p.exists() and not overwrite:
                    raise AvgzslError(f"{p}: already exists (pass --overwrite / overwrite=True)")
            atomic_write(npy, lambda p: _save_npy(p, self.vectors))
            write_json(meta, self.meta())
            return npy
        bench = empty_benchmark(self.names, self.vectors, "class-embeddings", 0, 0,
                                {"kind": "class-embeddings", **{k: v for k, v in self.meta().items() if k != "names"}})
        return write_native(bench, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> "ClassEmbeddings":
        """Read what ``save`` wrote, or a native benchmark folder (its classes with text, in the
        benchmark's text space)."""
        path = Path(path)
        if path.is_dir():
            if not is_native(path):
                raise AvgzslError(f"{path}: a folder, but not an avgzsl native folder (embeddings or benchmark)")
            bench = load_native(path)
            info = bench.info
            if info.get("kind") == "class-embeddings":
                return cls(list(bench.class_names), bench.text, info.get("encoder", "?"), info.get("space", "?"),
                           dict(info.get("info") or {}))
            keep = np.flatnonzero(bench.has_text)
            return cls([bench.class_names[i] for i in keep], bench.text[keep], f"benchmark:{bench.name}",
                       text_space_name(bench.feature_set), {"benchmark": str(path)})
        npy, meta_path = path.with_suffix(".npy"), path.with_suffix(".json")
        if not npy.is_file():
            raise AvgzslError(f"{npy}: no such embeddings file")
        if not meta_path.is_file():
            raise AvgzslError(f"{meta_path}: missing; an embeddings .npy needs its .json beside it (names, encoder, "
                              f"dim), as `avgzsl embed-classes` writes")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise AvgzslError(f"{meta_path}: unreadable embeddings file ({e})") from None
        vectors = load_npy_safely(npy, allow_pickle=False)  # checks the declared size against the file first
        if not isinstance(meta, dict) or meta.get("format") != EMBEDDINGS_FORMAT:
            raise AvgzslError(f"{meta_path}: not an {EMBEDDINGS_FORMAT} file")
        try:
            names = [unicodedata.normalize("NFC", str(n)) for n in meta["names"]]
            emb = cls(names, vectors, str(meta["encoder"]), str(meta["space"]), dict(meta.get("info") or {}))
        except KeyError as e:
            raise AvgzslError(f"{meta_path}: incomplete (missing {e})") from None
        if int(meta.get("dim", emb.dim)) != emb.dim:
            raise AvgzslError(f"{meta_path}: says dim {meta['dim']} but {npy} holds {emb.dim}-d vectors")
        return emb

    def subset(self, index) -> "ClassEmbeddings":
        index = np.asarray(index)
        return ClassEmbeddings([self.names[i] for i in index], self.vectors[index], self.encoder, self.space,
                               dict(self.info))


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save(str) would append ".npy" to the temporary name
        np.save(f, arr, allow_pickle=False)


def embed_classes(names: Sequence[str], encoder: str | TextEncoder = "minilm", *, weights=None, clip_weights=None,
                  clap_weights=None, templates=None, device: str = "cpu", progress: bool = False) -> ClassEmbeddings:
    """Embed `names` with a registered encoder (or an encoder instance)."""
    names = [str(n) for n in names]
    if not names:
        raise AvgzslError("no class names to embed")
    enc = encoder if isinstance(encoder, TextEncoder) else get_encoder(
        encoder, weights=weights, clip_weights=clip_weights, clap_weights=clap_weights, templates=templates,
        device=device)
    vectors = enc.encode(names, progress=progress)
    if vectors.shape != (len(names), enc.dim):
        raise EncoderError(f"encoder {enc.name!r} returned shape {vectors.shape}, expected ({len(names)}, {enc.dim})")
    return ClassEmbeddings(names, vectors, enc.name, enc.space, enc.describe())
