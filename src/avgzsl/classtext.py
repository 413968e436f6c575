"""The class text a run trains with: the benchmark's own, an embeddings file, or names + descriptions.

Four sources, chosen by the run config (`load_run_benchmark`; CLI, reproduce and sweep all load here):

- the benchmark's text (default): the word2vec / CLIP+CLAP vectors of its feature files;
- `class_text: FILE` — a class-embeddings file (`avgzsl embed-classes`, encoders/class_embeddings.py),
  matched to the benchmark's classes by name; it replaces the text and its space;
- a dataset's own `class_text_descriptions.npy` beside its text files (the synthetic benchmarks write
  one), for a model that needs descriptions (KDA) when the config gives neither option;
- `descriptions: FILE.csv` — each class's name and its descriptions (one row per class: the class name,
  then one or more description cells; an optional header row whose first cell is `name` or `class`),
  embedded at load with `text_encoder` (default: the encoder that computes the benchmark's own text
  space, where one exists) and averaged per class (`describe_classes`).

Averaging (`describe_classes`): vector_c = renormalise(mean([E(name_c), E(d_c1), ..., E(d_cn)])): the
name through the encoder's prompt templates (`--templates none`: the bare name, as KDA's code), each
description as a plain sentence, every vector L2-normalised, the mean normalised again (per part for a
joint space). KDA (Chen et al., 2023) averages its encoder's raw outputs of the name and three
descriptions; normalising first and after is our choice: it keeps class texts unit vectors like every
other class text here, and no single sentence outweighs the others by its norm.

Descriptions are data the user supplies (e.g. written by a language model, as KDA's); avgzsl ships none.
A run on replaced text records it: `bench.info["class_text"]` (source, encoder, space, file and hash),
the text space in checkpoints is the encoder's, and the data fingerprint changes with the text, so a
resume on other descriptions is refused like a resume on other features.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import load_benchmark
from .data.types import Benchmark
from .encoders import ClassEmbeddings, get_encoder
from .encoders.text import TextEncoder
from .errors import ConfigError, DataError
from .models import get_model_class
from .spaces import encoder_for_space, get_space

log = logging.getLogger("avgzsl.classtext")

__all__ = ["read_descriptions", "describe_classes", "apply_class_text", "declare_text_space", "load_run_benchmark"]

_HEADER = {"name", "class", "class_name", "classname"}


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name).strip().lower()


def read_descriptions(path: str | Path) -> dict[str, list[str]]:
    """{class name: [description, ...]} from a CSV (class, description, ...). One-line errors name the
    file and line: unreadable file, a class without a description, a class listed twice."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the descriptions file ({type(e).__name__}: {e})") from None
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as e:
        raise DataError(f"{path}: not a CSV file ({e})") from None
    out: dict[str, list[str]] = {}
    first_line = {}
    for line, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if line == 1 and cells[0].lower() in _HEADER:
            continue
        name, descs = cells[0], [c for c in cells[1:] if c]
        if not name:
            raise DataError(f"{path}: line {line}: no class name in the first column")
        if not descs:
            raise DataError(f"{path}: line {line}: class {name!r} has no description (expected: name, description, ...)")
        if _key(name) in first_line:
            raise DataError(f"{path}: line {line}: class {name!r} is listed twice (first on line "
                            f"{first_line[_key(name)]}; names are compared case-insensitively)")
        first_line[_key(name)] = line
        out[unicodedata.normalize("NFC", name)] = descs
    if not out:
        raise DataError(f"{path}: no class descriptions (one row per class: name, description, ...)")
    return out


def _renormalise(v: np.ndarray, part_dims: Sequence[int]) -> np.ndarray:
    out, start = np.empty_like(v), 0
    for d in part_dims:
        p = v[:, start:start + d]
        out[:, start:start + d] = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        start += d
    return out


def describe_classes(names: Sequence[str], descriptions: dict[str, list[str]], encoder: TextEncoder,
                     source: str = "", progress: bool = False) -> ClassEmbeddings:
    """One vector per name: the renormalised mean of its name's and its descriptions' embeddings."""
    by_key = {_key(n): d for n, d in descriptions.items()}
    missing = [n for n in names if _key(n) not in by_key]
    if missing:
        where = f"{source}: " if source else ""
        raise DataError(f"{where}no descriptions for {len(missing)} class(es), e.g. {missing[0]!r}")
    sentences = [d for n in names for d in by_key[_key(n)]]
    counts = [len(by_key[_key(n)]) for n in names]
    name_vecs = encoder.encode(list(names), progress=progress).astype(np.float64)  # (C, D)
    sent_vecs = encoder.encode_sentences(sentences, progress=progress).astype(np.float64)  # (S, D)
    ends = np.cumsum(counts)
    sums = np.add.reduceat(sent_vecs, ends - np.asarray(counts), axis=0)  # (C, D) per-class sums
    mean = (name_vecs + sums) / (1 + np.asarray(counts, np.float64))[:, None]  # (C, D)
    vectors = _renormalise(mean, encoder.part_dims).astype(np.float32)
    info = {**encoder.describe(), "descriptions": str(source) if source else "in memory",
            "descriptions_per_class": {"min": int(min(counts)), "max": int(max(counts))},
            "averaging": "renormalised mean of the name and each description, each L2-normalised"}
    return ClassEmbeddings(list(names), vectors, encoder.name, encoder.space, info)


def apply_class_text(bench: Benchmark, emb: ClassEmbeddings, source: dict, what: str = "embedding") -> Benchmark:
    """The benchmark with its text replaced by `emb`, matched by class name; every class the split lists
    use needs a vector (one-line error naming the first that lacks one, as "no {what} for class")."""
    by_key = {_key(n): i for i, n in enumerate(emb.names)}
    rows = [by_key.get(_key(n), -1) for n in bench.class_names]
    used = sorted({int(c) for s in bench.splits.values() for c in s.classes})
    lacking = [bench.class_names[c] for c in used if rows[c] < 0]
    if lacking:
        raise DataError(f"{source.get('file', 'class text')}: no {what} for class {lacking[0]!r}"
                        + (f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else "")
                        + ", which the benchmark's split lists use")
    text = np.zeros((len(bench.class_names), emb.dim), np.float32)
    has = np.asarray([r >= 0 for r in rows])
    text[has] = emb.vectors[[r for r in rows if r >= 0]]
    digest = hashlib.blake2b(np.ascontiguousarray(text).tobytes(), digest_size=8).hexdigest()
    info = dict(bench.info)
    info["class_text"] = {**source, "encoder": emb.encoder, "space": emb.space, "dim": emb.dim,
                          "descriptions": source.get("descriptions") or emb.info.get("descriptions"),
                          "hash": digest}
    info["text_space"] = emb.space
    if info.get("cache_key"):  # the run folder's data fingerprint: other text is other data
        info["cache_key"] = f"{info['cache_key']}+text-{digest}"
    return replace(bench, text=text, has_text=has, info=info)


def declare_text_space(bench: Benchmark, space: str) -> Benchmark:
    """The benchmark with its own text declared to lie in `space` (config `text_space`): what checkpoints
    record and `predict` embeds new class names with. A space the registry knows must have the text's dim."""
    record, dim = get_space(space), int(bench.text.shape[1])
    if record is not None and record.dim is not None and record.dim != dim:
        raise ConfigError(f"text_space={space}: that space is {record.dim}-d, but the class text of "
                          f"{bench.name} is {dim}-d")
    return replace(bench, info={**bench.info, "text_space": space})


def load_run_benchmark(root, cfg, *, cache: bool = True, progress: bool = False) -> Benchmark:
    """The benchmark a run config asks for: `load_benchmark` with the config's split, feature folder and
    text alignment, its declared `text_space`, then its class-text option (`class_text` or `descriptions`, module
    docstring; replaced text carries its encoder's space)."""
    bench = load_benchmark(root, split=cfg.split, feature_dir=cfg.feature_dir, text_alignment=cfg.text_alignment,
                           cache=cache, progress=progress)
    if cfg.text_space:
        bench = declare_text_space(bench, cfg.text_space)
    if cfg.class_text and cfg.descriptions:
        raise ConfigError("class_text and descriptions both set: give class embeddings or descriptions, not both")
    if cfg.class_text:
        emb = ClassEmbeddings.load(cfg.class_text)
        return apply_class_text(bench, emb, {"source": "class_text", "file": str(cfg.class_text)})
    if cfg.descriptions:
        name = cfg.text_encoder or encoder_for_space(bench.text_space)
        if name is None:
            raise ConfigError(f"descriptions: no avgzsl encoder computes the text space of {bench.name} "
                              f"({bench.text_space}); set text_encoder (clip | clap | clipclap | "
                              f"clipclap-wavcaps | minilm) and the class text becomes that encoder's")
        encoder = get_encoder(name, weights=cfg.text_weights)
        descs = read_descriptions(cfg.descriptions)
        keys = {_key(n) for n in descs}
        names = [n for n in bench.class_names if _key(n) in keys]  # the used ones lacking: an error below
        if not names:
            raise DataError(f"{cfg.descriptions}: describes none of the classes of {bench.name} "
                            f"(e.g. {bench.class_names[0]!r}); names are compared case-insensitively")
        emb = describe_classes(names, descs, encoder, source=str(cfg.descriptions), progress=progress)
        return apply_class_text(bench, emb, {"source": "descriptions", "file": str(cfg.descriptions),
                                             "descriptions": str(cfg.descriptions)}, what="description")
    shipped = _shipped_descriptions(bench)
    if shipped is not None and get_model_class(cfg.model).needs_descriptions:
        log.info("%s: class text of names + descriptions from %s", cfg.model, shipped)
        return apply_class_text(bench, ClassEmbeddings.load(shipped), {"source": "dataset", "file": str(shipped)})
    return bench


def _shipped_descriptions(bench: Benchmark) -> Path | None:
    """A dataset's own names + descriptions class text, `class_text_descriptions.npy` beside its text
    files (the synthetic benchmarks write one), used by a model that needs descriptions when the
    config names none."""
    files, root = bench.info.get("text_files") or [], bench.info.get("root")
    if not files or not root:
        return None
    path = Path(root) / Path(files[0]).parent / "class_text_descriptions.npy"
    return path if path.is_file() else None
