"""The classic GZSL mistakes, checked before any training (`run_protocol` refuses a run that makes one).

Errors: a class both seen and unseen in one stage, an unseen validation or test class trained on, a
test-unseen class's videos in a training folder, a video in both a training and a test (or validation)
folder. Warnings: duplicate video names within a folder. Each is one line naming the folders and the
first offenders (docs/protocol.md).
"""
from __future__ import annotations

import numpy as np

from .data.types import Benchmark


def check_leakage(bench: Benchmark) -> tuple[list[str], list[str]]:
    """The classic GZSL mistakes. Returns (errors, warnings) as one-line messages."""
    s = bench.splits
    names = bench.class_names
    errors, warnings = [], []

    def overlap(a: str, b: str, what: str):
        both = np.intersect1d(s[a].classes, s[b].classes)
        if len(both):
            shown = ", ".join(names[i] for i in both[:5]) + (" ..." if len(both) > 5 else "")
            errors.append(f"{len(both)} class(es) in both {a} and {b} ({what}): {shown}")

    overlap("stage_1_val_seen", "stage_1_val_unseen", "seen and unseen at once")
    overlap("stage_2_test_seen", "stage_2_test_unseen", "seen and unseen at once")
    overlap("stage_1_train", "stage_1_val_unseen", "an unseen validation class is trained on")
    overlap("stage_2_train", "stage_2_test_unseen", "a test-unseen class is trained on in stage 2")
    for folder in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen", "stage_2_train"):
        bad = np.intersect1d(np.unique(s[folder].labels), s["stage_2_test_unseen"].classes)
        if len(bad):
            errors.append(f"{folder} holds videos of {len(bad)} test-unseen class(es): "
                          + ", ".join(names[i] for i in bad[:5]))
    train_folders = ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen", "stage_2_train")
    test_names = set(s["stage_2_test_seen"].video_names) | set(s["stage_2_test_unseen"].video_names)
    for folder in train_folders:
        shared = test_names.intersection(s[folder].video_names)
        if shared:
            errors.append(f"{len(shared)} video(s) of {folder} are also test videos, e.g. {sorted(shared)[0]!r}")
    val_names = set(s["stage_1_val_seen"].video_names) | set(s["stage_1_val_unseen"].video_names)
    shared = val_names.intersection(s["stage_1_train"].video_names)
    if shared:
        errors.append(f"{len(shared)} video(s) of stage_1_train are also validation videos, e.g. {sorted(shared)[0]!r}")
    for folder, split in s.items():
        dup = len(split.video_names) - len(set(split.video_names))
        if dup:
            warnings.append(f"{folder}: {dup} duplicate video name(s)")
    return errors, warnings
