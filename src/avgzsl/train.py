"""One plain function per step: `train_one_epoch` and `evaluate` (DINO style, no Trainer class).

Features live as tensors on the target device for the whole run; a batch is an index tensor, so the
cost of an epoch is the model's arithmetic, not Python data handling.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.types import Split
from .metrics import GZSLResult, Nearest, gzsl_metrics
from .models.base import Batch, GZSLModel


@dataclass
class SplitTensors:
    """A Split's arrays as tensors on one device."""

    batch: Batch
    labels: torch.Tensor  # (N,) global class ids

    @staticmethod
    def from_split(split: Split, device: torch.device | str = "cpu") -> "SplitTensors":
        def t(a, dtype=None):
            if a is None:
                return None
            x = torch.from_numpy(np.ascontiguousarray(a))
            return x.to(device=device, dtype=dtype or x.dtype)
        batch = Batch(t(split.audio, torch.float32), t(split.video, torch.float32), t(split.audio_mask),
                      t(split.video_mask), t(split.audio_times, torch.float32), t(split.video_times, torch.float32))
        return SplitTensors(batch, t(split.labels, torch.int64))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, idx: torch.Tensor) -> Batch:
        b = self.batch
        return Batch(*[None if x is None else x[idx] for x in
                       (b.audio, b.video, b.audio_mask, b.video_mask, b.audio_times, b.video_times)])


def train_one_epoch(model: GZSLModel, optimizer: torch.optim.Optimizer, data: SplitTensors,
                    batches: torch.Tensor, class_text: torch.Tensor, local_index: torch.Tensor,
                    progress: bool = False, desc: str = "train") -> dict[str, float]:
    """One pass over `batches` ((n_batches, bs) row indices). Returns the mean of each loss term.

    class_text: (K, Dt) text of the training classes; local_index: (C_all,) global id -> row of class_text.
    """
    model.train()
    sums: dict[str, torch.Tensor] = {}
    device = data.labels.device
    batches = batches.to(device)
    for idx in tqdm(batches, desc=desc, leave=False, disable=not progress, mininterval=0.5):
        batch = data.take(idx)
        target = local_index[data.labels[idx]]  # (B,) rows of class_text
        loss, terms = model.loss(batch, class_text, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for k, v in terms.items():  # summed on the device: no host sync per step
            sums[k] = sums[k] + v if k in sums else v.clone()
    n = len(batches)
    return {k: float(v) / n for k, v in sums.items()}


@torch.inference_mode()
def nearest_classes(model: GZSLModel, data: SplitTensors, text: torch.Tensor, class_ids: np.ndarray,
                    seen_mask: np.ndarray, eval_bs: int = 4096, progress: bool = False,
                    keep_embeddings: int = 0) -> tuple[Nearest, tuple | None, np.ndarray]:
    """Each video's nearest seen and unseen candidate, computed chunk by chunk (never (N, C) at once).

    text: (C_all, Dt) all class texts; class_ids: (C,) sorted candidate ids. Returns the Nearest
    arrays, optionally (row indices, embeddings) of `keep_embeddings` videos spread evenly over the set
    (for plots), and the class embeddings of the candidates.
    """
    model.eval()
    device = data.labels.device
    ids = torch.as_tensor(np.asarray(class_ids), device=device)
    class_emb = model.embed_classes(text[ids])  # (C, E)
    seen = torch.as_tensor(np.asarray(seen_mask, bool), device=device)
    seen_cols, unseen_cols = torch.nonzero(seen).flatten(), torch.nonzero(~seen).flatten()
    parts = []
    n = len(data)
    for start in tqdm(range(0, n, eval_bs), desc="eval", leave=False, disable=not progress):
        idx = torch.arange(start, min(start + eval_bs, n), device=device)
        batch = data.take(idx)
        dist = model.distances(batch, class_emb)  # (b, C)
        cols = []
        for part in (seen_cols, unseen_cols):
            if len(part):
                d, j = dist[:, part].min(dim=1)  # first minimum on ties, like argmin
                cols += [part[j].cpu().numpy(), d.float().cpu().numpy()]
            else:
                cols += [np.full(len(idx), -1, np.int64), np.full(len(idx), np.inf, np.float32)]
        parts.append(Nearest(*cols))
    kept = None
    if keep_embeddings:
        rows = np.unique(np.linspace(0, n - 1, min(keep_embeddings, n)).round().astype(np.int64))
        emb = model.embed_videos(data.take(torch.as_tensor(rows, device=device))).float().cpu().numpy()
        kept = (rows, emb)
    return Nearest.concat(parts), kept, class_emb.float().cpu().numpy()


def evaluate(model: GZSLModel, data: SplitTensors, text: torch.Tensor, class_ids: np.ndarray,
             seen_mask: np.ndarray, betas: np.ndarray, eval_bs: int = 4096, progress: bool = False
             ) -> tuple[GZSLResult, Nearest]:
    """S/U/HM over the beta grid (or at one fixed beta), ZSL and AUSUC for one evaluation set."""
    nearest, _, _ = nearest_classes(model, data, text, class_ids, seen_mask, eval_bs, progress)
    return gzsl_metrics(nearest, data.labels.cpu().numpy(), class_ids, seen_mask, betas), nearest
