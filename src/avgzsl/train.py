"""One plain function per step: `train_one_epoch` and `evaluate` (DINO style, no Trainer class).

Features live as tensors on the target device for the whole run; a batch is an index tensor, so the
cost of an epoch is the model's arithmetic, not Python data handling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.types import Split
from .errors import AvgzslError
from .metrics import GZSLResult, Nearest, gzsl_metrics
from .models.base import Batch, GZSLModel


class NonFiniteLoss(AvgzslError):
    """Training diverged: a loss term or a weight became NaN/inf during an epoch. Raised before the
    epoch's model can be evaluated or saved, so the run's last state is the last good epoch."""


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
                    batches, class_text: torch.Tensor, local_index: torch.Tensor,
                    progress: bool = False, desc: str = "train", loss_fn=None, after_step=None,
                    step_losses: dict | None = None, step_fn=None) -> dict[str, float]:
    """One pass over `batches` ((n_batches, bs) row indices, or any sized iterable of (bs,) index
    tensors, drawn as they are needed). Returns the mean of each loss term.

    class_text: (K, Dt) text of the training classes; local_index: (C_all,) global id -> row of class_text.
    loss_fn(batch, class_text, target) replaces model.loss; after_step(batch, class_text, target) runs
    after each optimiser step (reference mode uses both: reference.py). `step_losses`, a dict, receives
    every step's terms ({term: [value per step]}, the summed loss as "total"): one copy to the host per epoch.
    step_fn (default `solo_step`, same arguments) runs one optimiser step and returns (loss, terms); a
    packed run's member passes its pack's (pack.py).
    """
    model.train()
    step_fn = step_fn or solo_step
    sums: dict[str, torch.Tensor] = {}
    device = data.labels.device
    if isinstance(batches, torch.Tensor):
        batches = batches.to(device)
    n = len(batches)
    names, steps = None, None
    for i, idx in enumerate(tqdm(batches, desc=desc, leave=False, disable=not progress, mininterval=0.5, total=n)):
        idx = idx.to(device)
        batch = data.take(idx)
        target = local_index[data.labels[idx]]  # (B,) rows of class_text
        loss, terms = step_fn(model, optimizer, batch, class_text, target, loss_fn)
        if after_step is not None:
            after_step(batch, class_text, target)
        for k, v in terms.items():  # summed on the device: no host sync per step
            sums[k] = sums[k] + v if k in sums else v.clone()
        if steps is None:
            names = [*terms, "_loss"]
            steps, zero = torch.empty(n, len(names), device=device), torch.zeros((), device=device)
        # every step's terms, kept on the device (two small kernels, no sync) for the check below
        row = [terms.get(k, zero).float() for k in names[:-1]] + [loss.detach().float()]
        steps[i] = torch.stack(row).reshape(-1)
    check_finite(model, steps, names, desc)
    if step_losses is not None and steps is not None:
        values = steps.cpu().tolist()  # (n_steps, n_terms)
        for j, k in enumerate(names):
            step_losses["total" if k == "_loss" else k] = [row[j] for row in values]
    return {k: float(v) / n for k, v in sums.items()}


def solo_step(model: GZSLModel, optimizer: torch.optim.Optimizer, batch: Batch, class_text: torch.Tensor,
              target: torch.Tensor, loss_fn=None) -> tuple[torch.Tensor, dict]:
    """One optimiser step of one model: loss (model.loss or loss_fn), backward, step."""
    loss, terms = (loss_fn or model.loss)(batch, class_text, target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, terms


def check_finite(model: GZSLModel, steps: torch.Tensor | None, names: list[str] | None, desc: str) -> None:
    """Raise NonFiniteLoss if a loss term of any step, or any weight, is NaN/inf.

    Checked once per epoch, after its last step and before the protocol evaluates or saves anything:
    one host sync per epoch instead of one per step. `steps` (n_steps, n_terms) holds every step's
    terms, so the message names the term that went bad first and its step (the epoch sums cannot:
    one NaN step makes the weights NaN and every later term NaN). The weights (and BatchNorm
    statistics) are checked too: a bad update on the epoch's last step leaves NaN weights behind
    losses that were all finite.
    """
    weights = [(k, w) for k, w in model.state_dict().items() if w.dtype.is_floating_point]
    flags = [torch.isfinite(w).all() for _, w in weights]
    if steps is not None:
        flags.append(torch.isfinite(steps).all())
    if not flags or bool(torch.stack(flags).all()):
        return
    if steps is not None and not bool(torch.isfinite(steps).all()):
        rows = steps.cpu()
        ok = torch.isfinite(rows)
        step = int((~ok.all(dim=1)).nonzero()[0, 0])
        bad = [j for j in range(len(names)) if not ok[step, j]]
        own = [j for j in bad if names[j] not in ("total", "_loss")]  # a model's term before the sums it feeds
        j = (own or bad)[0]
        what = f"loss term {names[j]!r}" if own else "the loss"
        kind = "nan" if math.isnan(float(rows[step, j])) else "inf"
        raise NonFiniteLoss(f"{desc}: {what} is {kind} (first at step {step + 1} of {len(rows)})")
    name = next(k for k, w in weights if not bool(torch.isfinite(w).all()))
    raise NonFiniteLoss(f"{desc}: the weights became NaN/inf (first: {name!r}) although every loss term was finite")


@torch.inference_mode()
def nearest_classes(model: GZSLModel, data: SplitTensors, text: torch.Tensor, class_ids: np.ndarray,
                    seen_mask: np.ndarray, eval_bs: int = 4096, progress: bool = False,
                    keep_embeddings: int = 0, distance_fn=None) -> tuple[Nearest, tuple | None, np.ndarray]:
    """Each video's nearest seen and unseen candidate, computed chunk by chunk (never (N, C) at once).

    text: (C_all, Dt) all class texts; class_ids: (C,) sorted candidate ids. Returns the Nearest
    arrays, optionally (row indices, embeddings) of `keep_embeddings` videos spread evenly over the set
    (for plots), and the class embeddings of the candidates. distance_fn(batch, class_emb) replaces
    model.distances (reference mode's single-modality evaluations).
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
        dist = (distance_fn or model.distances)(batch, class_emb)  # (b, C)
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
             seen_mask: np.ndarray, betas: np.ndarray, eval_bs: int = 4096, progress: bool = False,
             arithmetic: str = "float64", distance_fn=None) -> tuple[GZSLResult, Nearest]:
    """S/U/HM over the beta grid (or at one fixed beta), ZSL and AUSUC for one evaluation set."""
    nearest, _, _ = nearest_classes(model, data, text, class_ids, seen_mask, eval_bs, progress,
                                    distance_fn=distance_fn)
    return gzsl_metrics(nearest, data.labels.cpu().numpy(), class_ids, seen_mask, betas, arithmetic), nearest
