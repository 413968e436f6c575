"""Class-balanced batch sampling with replacement, as index tensors (no per-sample Python).

The reference draws each batch element by picking a class uniformly, then one of its videos uniformly.
We draw a whole epoch of indices at once from a seeded torch.Generator, so the sampler's state is the
generator's state (saved in checkpoints for exact resume).
"""
from __future__ import annotations

import numpy as np
import torch


class ClassBalancedSampler:
    """Draws `n_batches` batches of `bs` row indices per epoch: class uniform, then video uniform."""

    def __init__(self, labels: np.ndarray, n_batches: int, bs: int, seed: int):
        labels = np.asarray(labels)
        order = np.argsort(labels, kind="stable")
        self.classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
        self.order = torch.from_numpy(order.astype(np.int64))  # rows grouped by class
        self.starts = torch.from_numpy(starts.astype(np.int64))
        self.counts = torch.from_numpy(counts.astype(np.int64))
        self.n_batches, self.bs = n_batches, bs
        self.generator = torch.Generator().manual_seed(int(seed))

    def epoch(self) -> torch.Tensor:
        """(n_batches, bs) int64 row indices into the split's arrays."""
        n = self.n_batches * self.bs
        cls = torch.randint(len(self.classes), (n,), generator=self.generator)  # (n,)
        offset = (torch.rand(n, generator=self.generator, dtype=torch.float64) * self.counts[cls]).long()
        offset = torch.minimum(offset, self.counts[cls] - 1)  # guard the measure-zero u == 1.0 edge
        return self.order[self.starts[cls] + offset].view(self.n_batches, self.bs)  # (n_batches, bs)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
