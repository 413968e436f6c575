"""Text embeddings for any class names, and the CLIP / CLAP towers they (and ``avgzsl extract``) use.

* ``towers.py``: weights from local folders, CLIP/CLAP loading (``LoadedTower``), pooled, normalised outputs;
* ``text.py``: the text-encoder interface and registry (clip, clap, clipclap, minilm), prompt templates;
* ``class_embeddings.py``: the embeddings file (``ClassEmbeddings``) and ``embed_classes``;
* ``wavcaps.py``: WavCaps' HTSAT-BERT CLAP from its checkpoint (text and audio), the clipclap-wavcaps encoder.

Space names and which encoder computes which space: ``src/avgzsl/spaces.py``.
"""
from .class_embeddings import EMBEDDINGS_FORMAT, ClassEmbeddings, embed_classes
from .text import (TEMPLATES, ClapTextEncoder, ClipClapTextEncoder, ClipTextEncoder, MiniLMTextEncoder, TextEncoder,
                   get_encoder, list_encoders, load_templates, prompt_ensemble, read_names, register_encoder)
from .towers import (EncoderError, LoadedTower, l2_normalise, load_clap, load_clip, pooled_features, require,
                     resolve_weights)
from .wavcaps import ClipClapWavCapsTextEncoder, WavCapsTextEncoder  # registers clipclap-wavcaps

__all__ = ["EncoderError", "TextEncoder", "ClassEmbeddings", "TEMPLATES", "register_encoder", "list_encoders",
           "get_encoder", "embed_classes", "read_names", "load_templates", "prompt_ensemble", "resolve_weights",
           "load_clip", "load_clap", "LoadedTower", "pooled_features", "l2_normalise", "require",
           "EMBEDDINGS_FORMAT", "ClipTextEncoder", "ClapTextEncoder", "ClipClapTextEncoder", "MiniLMTextEncoder",
           "ClipClapWavCapsTextEncoder", "WavCapsTextEncoder"]
