"""Shared fixtures: a tiny in-memory benchmark with learnable structure (no files)."""
from __future__ import annotations

import numpy as np
import pytest

from avgzsl.data.types import Benchmark, Split


def tiny_benchmark(seed: int = 0, n_per_class: int = 12, da: int = 12, dv: int = 8, dt: int = 10,
                   temporal: bool = False) -> Benchmark:
    """10 classes: stage-1 seen 0-3, val-unseen 4-5, test-unseen 6-7, 8-9 listed nowhere.

    Features are noisy linear maps of each class's text vector, so zero-shot transfer is learnable.
    """
    rng = np.random.default_rng(seed)
    C = 10
    text = rng.normal(size=(C, dt)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    A, V = rng.normal(size=(dt, da)), rng.normal(size=(dt, dv))
    counter = iter(range(10**6))

    def split(classes, n=n_per_class, listed=None):
        labels = np.repeat(np.asarray(classes, np.int64), n)
        z = text[labels] + 0.3 * rng.normal(size=(len(labels), dt))
        a = (z @ A + 0.3 * rng.normal(size=(len(labels), da))).astype(np.float32)
        v = (z @ V + 0.3 * rng.normal(size=(len(labels), dv))).astype(np.float32)
        names = [f"vid{next(counter)}" for _ in labels]
        kw = {}
        if temporal:
            T = 4
            a = np.repeat(a[:, None], T, 1) + 0.1 * rng.normal(size=(len(a), T, da)).astype(np.float32)
            v = np.repeat(v[:, None], T, 1) + 0.1 * rng.normal(size=(len(v), T, dv)).astype(np.float32)
            lengths = rng.integers(1, T + 1, size=len(a))
            mask = np.arange(T)[None, :] < lengths[:, None]
            a, v = a * mask[..., None], v * mask[..., None]
            times = np.where(mask, np.arange(T)[None, :].astype(np.float32), 0).astype(np.float32)
            kw = dict(audio_mask=mask, video_mask=mask.copy(), audio_times=times, video_times=times.copy())
        return Split(a.astype(np.float32), v.astype(np.float32), labels, names,
                     np.asarray(sorted(listed if listed is not None else classes), np.int64), **kw)

    s1_train = split([0, 1, 2, 3])
    val_seen = split([0, 1, 2, 3], n=4)
    val_unseen = split([4, 5], n=6)
    s2_train = Split.concat([s1_train, val_seen, val_unseen])
    splits = {
        "stage_1_train": s1_train, "stage_1_val_seen": val_seen, "stage_1_val_unseen": val_unseen,
        "stage_2_train": s2_train,
        "stage_2_test_seen": split([0, 1, 2, 3, 4, 5], n=4),
        "stage_2_test_unseen": split([6, 7], n=6),
    }
    names = [f"class{c:02d}" for c in range(C)]
    return Benchmark("tiny", names, text, np.ones(C, bool), splits, "clipclap", {"root": "<memory>"})


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread is faster, and kinder to a shared machine (a module opts in with
    `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_bench():
    return tiny_benchmark()
