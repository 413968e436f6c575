"""Reference mode: the public reference code's behaviours where our default protocol deviates from it.

`reference_mode: true` (config.REFERENCE_BEHAVIOURS names each behaviour; `reference_off` keeps single
ones ours) reproduces ClipClap-GZSL (github.com/dkurzend/ClipClap-GZSL, commit 56b8e1b) as its README
command runs it, bugs included; benchmarks/reference/ holds the side-by-side runs and the findings this
module is written from (benchmarks/reference/README.md, FINDINGS n = "finding n" below). Places in the
reference are named `file:function`.

What lives here, and why it is not in protocol.py / train.py: these are faithful copies of the
reference's *behaviour* (never of its code), kept in one place so that our own protocol stays readable.

- `ReferenceLoader` (`rng_stream`, finding 7): the reference draws every random number from the one
  global torch generator. Its WeightedRandomBatchSampler draws each batch as
  `torch.multinomial(weights, bs, replacement=True)` over per-video weights (1/K)/n_c, the videos ordered
  by class (ascending reference class id) and by file order within a class; its
  `DataLoader(num_workers=4)` draws one int64 base seed per iterator, prefetches 4 x 2 index batches when
  the iterator is made and draws the next one each time it hands one out. After each training epoch its
  validation-loss pass (src/train.py:val_step, eval mode: it changes nothing but the RNG) draws a base
  seed, 9 batches, the evaluation loader's base seed, then the rest of its batches.
- `reference_rank` (`text_pairing`, `rng_stream`, finding 1): its class ids are positions in the
  case-sensitive sort of all_class.txt; ours in the case-insensitive one.
- `best_epoch_update` (`best_epoch_rule`, finding 9, src/utils.py:check_best_score).
- `test_beta` (`metric_arithmetic` / `mode_betas`, finding 3, src/test.py:_get_test_performance).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

# DataLoader workers per code base (ClipClap-GZSL main.py: 4; AVCA-GZSL main.py: 8); each prefetches
# torch's default 2 index batches when an iterator is made
LOADER_WORKERS = {"clipclap-gzsl": 4, "avca-gzsl": 8}
PREFETCH_FACTOR = 2


def reference_rank(class_names: list[str]) -> np.ndarray:
    """(C,) our class id -> the reference's (its position in the case-sensitive sort of the names)."""
    rank = np.empty(len(class_names), np.int64)
    rank[sorted(range(len(class_names)), key=lambda i: class_names[i])] = np.arange(len(class_names))
    return rank


def in_reference_order(classes: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Class ids sorted by their reference id (its CE rows, its sampler's class order)."""
    classes = np.asarray(classes)
    return classes[np.argsort(rank[classes], kind="stable")]


def _seed_draw() -> None:
    """What a DataLoader iterator takes from the global generator for its workers' base seed."""
    torch.empty((), dtype=torch.int64).random_()


class ReferenceLoader:
    """The reference's batches of one training set, drawn from the global torch RNG in its order."""

    def __init__(self, labels: np.ndarray, rank: np.ndarray, n_batches: int, bs: int, code: str = "clipclap-gzsl"):
        labels = np.asarray(labels)
        classes = in_reference_order(np.unique(labels), rank)
        rows = [np.flatnonzero(labels == c) for c in classes]  # file order within a class
        sizes = np.array([len(r) for r in rows], dtype=np.float64)
        self.order = torch.from_numpy(np.concatenate(rows).astype(np.int64))  # (N,) video rows
        per_video = np.repeat((1.0 / len(classes)) / sizes, sizes.astype(np.int64))
        self.weights = torch.from_numpy(per_video)  # (N,) float64, as the reference's sampler holds them
        self.n_batches, self.bs = n_batches, bs
        self.prefetch = LOADER_WORKERS[code] * PREFETCH_FACTOR

    def _batch(self) -> torch.Tensor:
        return self.order[torch.multinomial(self.weights, self.bs, replacement=True)]  # (bs,)

    def epoch(self) -> "_Epoch":
        """A sized iterable of (bs,) row indices; each batch is drawn when the loader would draw it."""
        return _Epoch(self)

    def validation_pass(self) -> list[torch.Tensor]:
        """The draws of the reference's validation-loss pass over this set (it computes nothing we keep;
        the batches are returned for tests)."""
        _seed_draw()
        first = min(self.n_batches, self.prefetch + 1)
        batches = [self._batch() for _ in range(first)]
        _seed_draw()  # the evaluation loader, iterated at the pass's first batch
        return batches + [self._batch() for _ in range(self.n_batches - first)]


class _Epoch:
    def __init__(self, loader: ReferenceLoader):
        self.loader = loader

    def __len__(self) -> int:
        return self.loader.n_batches

    def __iter__(self):
        loader, n = self.loader, self.loader.n_batches
        _seed_draw()
        queue: deque = deque()
        drawn = 0
        for _ in range(min(n, loader.prefetch)):
            queue.append(loader._batch())
            drawn += 1
        for _ in range(n):
            if drawn < n:  # the next index batch goes to a worker before this one is handed out
                queue.append(loader._batch())
                drawn += 1
            yield queue.popleft()


def best_epoch_update(best_hm: float | None, hm: float, reference: bool) -> bool:
    """Does this epoch become the best? Ours: strictly greater HM (ties keep the first epoch).
    The reference's check_best_score: also whenever the stored best is falsy (None or 0.0), so while
    HM is 0 every epoch replaces the best, and if HM stays 0 the last epoch is chosen."""
    if best_hm is None or best_hm < 0:
        return True
    if reference and not best_hm:
        return True
    return hm > best_hm


def test_beta(betas: list[float], code: str = "clipclap-gzsl") -> float:
    """The reference's test-time beta from its audio-, video- and both-mode validation betas (src/test.py:
    _get_test_performance): ClipClap-GZSL (b_a + b_v + b_b + 1e-10) / 3; AVCA-GZSL their mean, 1e-10 if
    that is 0. Never 0, because a falsy beta makes its evaluation search the grid on the test set.
    One beta given = all three modes share it (a model with a single evaluation mode)."""
    betas = list(betas) * 3 if len(betas) == 1 else list(betas)
    if code == "avca-gzsl":
        mean = (betas[0] + betas[1] + betas[2]) / 3
        return mean if mean else 1e-10
    return (betas[0] + betas[1] + betas[2] + 1e-10) / 3


@dataclass
class ReferenceRun:
    """What one run's training loop needs to act as the reference: its behaviours (config.
    REFERENCE_BEHAVIOURS minus reference_off), its class ids, its code base, the validation labels."""

    behaviours: frozenset
    rank: np.ndarray  # (C,) our class id -> the reference's
    code: str  # the model's reference_code
    val_labels: np.ndarray  # (N_val,) validation videos' classes, in the order of its val set
    n_batches: int
    bs: int

    def class_order(self, classes: np.ndarray) -> np.ndarray:
        """The training classes in the order of the CE rows (rng_stream: the reference's)."""
        return in_reference_order(classes, self.rank) if "rng_stream" in self.behaviours else np.asarray(classes)

    def loaders(self, train_labels: np.ndarray) -> tuple[ReferenceLoader, ReferenceLoader] | None:
        """(training, validation) loaders when the RNG stream is the reference's, else None."""
        if "rng_stream" not in self.behaviours:
            return None
        return (ReferenceLoader(train_labels, self.rank, self.n_batches, self.bs, self.code),
                ReferenceLoader(self.val_labels, self.rank, self.n_batches, self.bs, self.code))

    def step_hooks(self, model) -> tuple:
        """(loss_fn, after_step) for train_one_epoch: the model's reference loss (call_order) and its
        second train-mode forward (double_bn), where the model has them; None = ours."""
        loss_fn = getattr(model, "reference_loss", None) if "call_order" in self.behaviours else None
        after = getattr(model, "reference_second_forward", None) if "double_bn" in self.behaviours else None
        return loss_fn, after
