"""The contract every registered model follows (the protocol and predictor only use this)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import nn

from ..data.types import FeatureDims


@dataclass
class Batch:
    """Model inputs for B videos. Temporal features carry masks (True = real step) and times (s)."""

    audio: torch.Tensor  # (B, Da) or (B, Ta, Da)
    video: torch.Tensor  # (B, Dv) or (B, Tv, Dv)
    audio_mask: torch.Tensor | None = None  # (B, Ta) bool
    video_mask: torch.Tensor | None = None  # (B, Tv) bool
    audio_times: torch.Tensor | None = None  # (B, Ta) float seconds
    video_times: torch.Tensor | None = None  # (B, Tv) float seconds

    def to(self, device, non_blocking: bool = False) -> "Batch":
        return Batch(*[None if (t := getattr(self, f.name)) is None
                       else t.to(device, non_blocking=non_blocking) for f in fields(self)])

    def __len__(self) -> int:
        return int(self.audio.shape[0])


class GZSLModel(nn.Module):
    """Base class. A subclass sets `Config` (a dataclass of its sizes/switches) and implements
    `loss`, `embed_videos` and `embed_classes`. Scoring is L2 distance by default (the protocol
    of ClipClap/AVCA/TCAF); a model that scores differently overrides `distances`."""

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    # the public code base whose behaviour reference mode reproduces for this model (reference.py)
    reference_code: ClassVar[str] = "clipclap-gzsl"
    # the method is defined on class texts made from class descriptions (KDA): the protocol refuses a
    # benchmark whose text was not (Benchmark.text_from_descriptions, classtext.py)
    needs_descriptions: ClassVar[bool] = False
    # the reference evaluates the model in audio-, video- and both-modes and its test beta averages the
    # three validation betas (reference behaviour `mode_betas`: AVGZSLNet, CJME in AVCA-GZSL)
    reference_mode_betas: ClassVar[bool] = False
    # one training step runs under torch.func.vmap with only nn.Dropout / attention dropout as randomness,
    # so a pack of runs steps together (pack.py); measured for every model by tests/test_pack.py
    packable: ClassVar[bool] = False

    def __init__(self, cfg, dims: FeatureDims):
        super().__init__()
        self.cfg = cfg
        self.dims = dims

    @property
    def adam_betas(self) -> tuple[float, float]:
        """Adam's (beta1, beta2) for the protocol's one optimiser; a model whose method fixes other
        values (the GAN of `fvaegan`) overrides this."""
        return (0.9, 0.999)

    def loss(self, batch: Batch, class_text: torch.Tensor, target: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """class_text: (K, Dt) text embeddings of the training classes; target: (B,) index into
        class_text. Returns the scalar loss and its named terms (detached scalars) for logging."""
        raise NotImplementedError

    def embed_videos(self, batch: Batch) -> torch.Tensor:  # (B, E)
        raise NotImplementedError

    def embed_classes(self, text: torch.Tensor) -> torch.Tensor:  # (C, Dt) -> (C, E)
        raise NotImplementedError

    def distances(self, batch: Batch, class_emb: torch.Tensor) -> torch.Tensor:
        """(B, C) distances, smaller = more likely. class_emb comes from `embed_classes`."""
        return torch.cdist(self.embed_videos(batch), class_emb)

    def eval_modes(self) -> tuple[str, ...]:
        """The single-modality scorings `mode_distances` returns (the report's modality breakdown);
        () for a model that only scores with both modalities."""
        return ()

    def mode_distances(self, batch: Batch, class_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """{mode: (B, C) distances} for each of `eval_modes()`: the video scored from one modality."""
        raise NotImplementedError(f"{self.name} has no single-modality evaluation")
