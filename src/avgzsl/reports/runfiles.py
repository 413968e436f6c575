"""What a run folder holds, read for reports (`load_run`), and the test set analysed at the chosen beta.

`load_run` reads every file of a run folder (`avgzsl.runfolder.RunFolder`); a missing or unreadable
optional file is None with the reason in `RunFiles.notes`. The analysis recomputes predictions, per-class
accuracy and S/U/HM with `avgzsl.metrics` (never a second implementation).
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AvgzslError
from ..metrics import Nearest, gzsl_metrics, predict_columns
from ..runfolder import RunFolder

NPZ_KEYS = ("nearest_seen_col", "nearest_seen_dist", "nearest_unseen_col", "nearest_unseen_dist", "labels",
            "class_ids", "seen_mask")


# ------------------------------------------------------------------------------------------------------
# reading a run folder
# ------------------------------------------------------------------------------------------------------
@dataclass
class RunFiles:
    """What a run folder holds; each optional part is None when missing or unreadable (reason in `notes`)."""

    path: Path
    results: dict | None
    rows: list[dict]
    config_text: str | None
    env: dict | None
    timings: dict | None
    test: dict | None  # arrays of eval/test.npz
    notes: dict = field(default_factory=dict)  # file name -> why it was not used
    steps: list = field(default_factory=list)  # steps.jsonl rows (per-step losses), [] for older run folders

    @property
    def name(self) -> str:
        return self.path.resolve().name


def _read_json(path: Path, notes: dict) -> dict | None:
    if not path.exists():
        notes[path.name] = "missing"
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        notes[path.name] = f"unreadable ({type(e).__name__}: {e})"
        return None


def load_run(run_dir: str | Path, need_results: bool = False) -> RunFiles:
    """Read a run folder. Not a folder, or neither results.json nor log.jsonl in it -> AvgzslError."""
    path = Path(run_dir)
    rf = RunFolder(path)
    if not path.is_dir():
        raise AvgzslError(f"{path}: no such run folder")
    if not rf.results_path.exists() and not rf.log_path.exists():
        raise AvgzslError(f"{path}: not a run folder (no {rf.RESULTS} or {rf.LOG}; see docs/protocol.md)")
    if need_results and not rf.results_path.exists():
        raise AvgzslError(f"{path}: the run has not finished (no {rf.RESULTS})")
    notes: dict[str, str] = {}  # keys: the RunFolder names (file order, as the report lists them)
    results = _read_json(rf.results_path, notes)
    if results is None and need_results:
        raise AvgzslError(f"{rf.results_path}: {notes[rf.RESULTS]}")
    if results is not None and not isinstance(results.get("test"), dict):
        if need_results:
            raise AvgzslError(f"{rf.results_path}: no 'test' results in it")
        notes[rf.RESULTS] = "has no 'test' results"
        results = None
    rows = []
    if rf.log_path.exists():
        for i, line in enumerate(rf.log_path.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                notes[rf.LOG] = f"line {i + 1} is not JSON (skipped)"
                continue
            if isinstance(row, dict) and "stage" in row and "epoch" in row:
                rows.append(row)
    else:
        notes[rf.LOG] = "missing"
    config_text = rf.config_path.read_text() if rf.config_path.exists() else None
    if config_text is None:
        notes[rf.CONFIG] = "missing"
    env = _read_json(rf.env_path, notes)
    timings = _read_json(rf.timings_path, notes)
    test = None
    npz = rf.test_eval_path
    if npz.exists():
        try:
            with np.load(npz, allow_pickle=False) as f:
                test = {k: f[k] for k in f.files}
            missing = [k for k in NPZ_KEYS if k not in test]
            if missing:
                notes[rf.TEST_EVAL] = "lacks " + ", ".join(missing)
                test = None
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            notes[rf.TEST_EVAL] = f"unreadable ({type(e).__name__}: {e})"
            test = None
    else:
        notes[rf.TEST_EVAL] = "missing"
    steps = []
    if rf.steps_path.exists():
        try:
            steps = [r for r in (json.loads(line) for line in rf.steps_path.read_text().splitlines() if line.strip())
                     if isinstance(r, dict) and isinstance(r.get("terms"), dict)]
        except ValueError as e:
            notes[rf.STEPS] = f"unreadable ({type(e).__name__}: {e})"
    return RunFiles(path, results, rows, config_text, env, timings, test, notes, steps)


# ------------------------------------------------------------------------------------------------------
# test-set analysis at the chosen beta (all through avgzsl.metrics)
# ------------------------------------------------------------------------------------------------------
@dataclass
class TestAnalysis:
    beta: float
    class_ids: np.ndarray  # (C,) candidate class ids
    class_names: list[str]  # (C,)
    seen_mask: np.ndarray  # (C,)
    counts: np.ndarray  # (C,) test videos per candidate class
    accuracy: np.ndarray  # (C,) per-class accuracy at beta (NaN: no videos)
    label_cols: np.ndarray  # (N,)
    pred_cols: np.ndarray  # (N,)
    summary: dict  # S/U/HM/ZSL/AUSUC recomputed at beta
    nearest: Nearest


def nearest_from_npz(test: dict) -> Nearest:
    return Nearest(np.asarray(test["nearest_seen_col"]), np.asarray(test["nearest_seen_dist"]),
                   np.asarray(test["nearest_unseen_col"]), np.asarray(test["nearest_unseen_dist"]))


def analyse_test(test: dict, beta: float) -> TestAnalysis:
    """Predictions, per-class accuracy and S/U/HM of eval/test.npz at `beta`."""
    nearest = nearest_from_npz(test)
    class_ids = np.asarray(test["class_ids"])
    seen_mask = np.asarray(test["seen_mask"], dtype=bool)
    labels = np.asarray(test["labels"])
    res = gzsl_metrics(nearest, labels, class_ids, seen_mask, np.array([beta]))
    label_cols = np.searchsorted(class_ids, labels)
    names = ([str(n) for n in test["class_names"]] if "class_names" in test
             else [f"class {int(c)}" for c in class_ids])
    return TestAnalysis(beta=float(beta), class_ids=class_ids, class_names=names, seen_mask=seen_mask,
                        counts=np.bincount(label_cols, minlength=len(class_ids)),
                        accuracy=np.asarray(res.class_accuracy, dtype=np.float64), label_cols=label_cols,
                        pred_cols=predict_columns(nearest, beta), summary=res.summary(), nearest=nearest)


def confused_pairs(an: TestAnalysis, k: int = 15) -> list[dict]:
    """The top-k off-diagonal cells of the confusion matrix at the chosen beta.

    Order: count (descending), then share of the true class's videos (descending), then true, predicted
    column. share = count / test videos of the true class.
    """
    C = len(an.class_ids)
    cm = np.bincount(an.label_cols * C + an.pred_cols, minlength=C * C).reshape(C, C)
    np.fill_diagonal(cm, 0)
    t, p = np.nonzero(cm)
    counts = cm[t, p]
    share = counts / an.counts[t]
    order = np.lexsort((p, t, -share, -counts))[:k]
    out = []
    for i in order:
        ti, pi = int(t[i]), int(p[i])
        out.append({"true_col": ti, "pred_col": pi, "true_id": int(an.class_ids[ti]),
                    "pred_id": int(an.class_ids[pi]), "true_name": an.class_names[ti],
                    "pred_name": an.class_names[pi], "true_seen": bool(an.seen_mask[ti]),
                    "pred_seen": bool(an.seen_mask[pi]), "count": int(counts[i]), "share": float(share[i]),
                    "true_videos": int(an.counts[ti])})
    return out


__all__ = ["load_run", "analyse_test", "confused_pairs", "nearest_from_npz", "RunFiles", "TestAnalysis"]
