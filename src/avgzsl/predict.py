"""Zero-shot prediction for new videos with a trained run.

```python
from avgzsl.predict import Predictor
p = Predictor.from_run("runs/mft-ucf-seed1")                  # checkpoints/stage2_final.pt
pred = p.predict(audio, video, class_embeddings, class_names, top_k=5, beta=p.beta, seen_mask=seen)
pred.names[0], pred.distances[0], pred.scores[0]               # top-k of the first video
```

Scoring is the protocol's (``docs/protocol.md``): the model's distance between each video and each
candidate class (L2 between embeddings, smaller = closer); with calibrated stacking, β is added to
the distance of every *seen* candidate; candidates are ranked by that (calibrated) distance, ties to
the lower candidate index. The top-1 class is exactly the protocol's prediction (``metrics.predict_columns``),
so accuracies computed from predictions equal the protocol's. ``scores`` are a softmax over
−distance across all candidates, for reading only (not calibrated probabilities).

Class embeddings must come from the text space the model was trained with: the checkpoint records it
(``text_space`` = {name, dim}); a ``ClassEmbeddings`` from another space or of another dim is refused
with a ``TextSpaceError``; a bare array is checked for its dim.
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .checkpoint import load_model
from .encoders import ClassEmbeddings, embed_classes, read_names
from .errors import AvgzslError, DataError
from .extract import read_features
from .io import atomic_write
from .metrics import nearest_seen_unseen, predict_columns
from .models.base import Batch
from .runfolder import RunFolder
from .spaces import TextSpaceError, encoder_for_space, feature_space_for_feature_set

log = logging.getLogger("avgzsl.predict")

__all__ = ["Predictor", "Prediction", "predict_files", "load_class_embeddings", "run_seen_classes",
           "format_prediction"]


@dataclass
class Prediction:
    """Top-k candidates per video. Columns index the candidate list given to ``predict``."""

    indices: np.ndarray  # (N, k) int64, best first
    distances: np.ndarray  # (N, k) float32 calibrated distance (+β for seen candidates), ascending
    scores: np.ndarray  # (N, k) float32 softmax over -distance across all candidates
    class_names: list[str] | None  # (C,) candidate names, if known
    seen_mask: np.ndarray | None  # (C,) bool, if known
    beta: float = 0.0
    video_names: list[str] | None = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def top1(self) -> np.ndarray:
        return self.indices[:, 0]

    @property
    def names(self) -> list[list[str]] | None:
        if self.class_names is None:
            return None
        return [[self.class_names[j] for j in row] for row in self.indices]

    def rows(self) -> list[dict]:
        """One dict per (video, rank): video, rank (1-based), class, index, distance, score[, seen]."""
        out = []
        for i in range(len(self)):
            video = self.video_names[i] if self.video_names is not None else str(i)
            for r, j in enumerate(self.indices[i]):
                row = {"video": video, "rank": r + 1,
                       "class": self.class_names[j] if self.class_names is not None else str(int(j)),
                       "index": int(j), "distance": float(self.distances[i, r]), "score": float(self.scores[i, r])}
                if self.seen_mask is not None:
                    row["seen"] = bool(self.seen_mask[j])
                out.append(row)
        return out

    def to_dict(self, **meta) -> dict:
        videos = []
        rows = self.rows()
        k = self.indices.shape[1]
        for i in range(len(self)):
            top = [{key: v for key, v in row.items() if key not in ("video", "rank")} for row in rows[i * k:(i + 1) * k]]
            videos.append({"video": rows[i * k]["video"] if k else str(i), "top": top})
        return {**meta, "beta": self.beta, "top_k": k,
                "classes": list(self.class_names) if self.class_names is not None else None,
                "seen_classes": ([n for n, s in zip(self.class_names, self.seen_mask) if s]
                                 if self.seen_mask is not None and self.class_names is not None else None),
                "predictions": videos}

    def write_csv(self, path: str | Path) -> Path:
        rows = self.rows()
        fields = ["video", "rank", "class", "index", "distance", "score"] + (["seen"] if self.seen_mask is not None else [])

        def write(p: Path):
            with open(p, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=fields)
                w.writeheader()
                for row in rows:
                    w.writerow({**row, "distance": f"{row['distance']:.6f}", "score": f"{row['score']:.6f}"})
        return atomic_write(path, write)

    def write_json(self, path: str | Path, **meta) -> Path:
        text = json.dumps(self.to_dict(**meta), indent=2, ensure_ascii=False) + "\n"
        return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))

    def write(self, path: str | Path, **meta) -> Path:
        """By suffix: ``.csv`` (one row per video and rank) or ``.json`` (per video, with `meta`)."""
        path = Path(path)
        if path.suffix.lower() == ".csv":
            return self.write_csv(path)
        if path.suffix.lower() == ".json":
            return self.write_json(path, **meta)
        raise AvgzslError(f"{path}: predictions are written as .csv or .json")


class Predictor:
    """A trained model with the text space and β of its checkpoint."""

    def __init__(self, model, checkpoint: dict, device: str | torch.device = "cpu", source: str | None = None):
        self.model, self.checkpoint, self.device, self.source = model, checkpoint, torch.device(device), source

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "Predictor":
        model, ckpt = load_model(path, device)
        return cls(model, ckpt, device, str(path))

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str | None = None, device: str = "cpu") -> "Predictor":
        """The run's final model (``RUN/checkpoints/stage2_final.pt``, or the checkpoint named); a checkpoint
        file also works."""
        run_dir = Path(run_dir)
        folder = RunFolder(run_dir)
        path = run_dir if run_dir.is_file() else (folder.checkpoint_path(checkpoint) if checkpoint else folder.stage2_final_path)
        if not path.is_file() and run_dir.is_dir():
            raise AvgzslError(f"{path}: no such checkpoint; is {run_dir} a finished run folder?")
        return cls.from_checkpoint(path, device)

    # ---- what the checkpoint says ---------------------------------------------------------------
    @property
    def text_space(self) -> dict:
        """{name, dim, feature_set} of the class embeddings the model was trained with."""
        ts = dict(self.checkpoint.get("text_space") or {})
        ts.setdefault("dim", int(self.checkpoint["dims"]["text"]))
        return ts

    @property
    def dims(self) -> dict:
        return dict(self.checkpoint["dims"])

    @property
    def beta(self) -> float | None:
        """The β chosen on validation by the protocol (None if the checkpoint holds none)."""
        b = self.checkpoint.get("beta")
        return None if b is None else float(b)

    @property
    def eval_bs(self) -> int:
        return int((self.checkpoint.get("run_config") or {}).get("eval_bs", 4096))

    def check_text_space(self, space: str | None, dim: int, where: str = "class embeddings") -> None:
        """Refuse class embeddings of another dim or (when both are known) another text space."""
        ts = self.text_space
        want, want_dim = ts.get("name"), int(ts["dim"])
        enc = encoder_for_space(want)
        hint = (f"embed the class names with `avgzsl embed-classes NAMES --encoder {enc}`" if enc else
                f"no avgzsl encoder computes {want!r}: use class embeddings from the encoder that made the "
                f"run's benchmark text" if want else "use class embeddings from the run's text encoder")
        trained = f"{want_dim}-d embeddings" + (f" from text space {want!r}" if want else "")
        if int(dim) != want_dim:
            raise TextSpaceError(f"{where} are {dim}-d" + (f" ({space})" if space else "")
                                 + f", but the model was trained with {trained}; {hint}")
        if space and want and space != want:
            raise TextSpaceError(f"{where} are from text space {space!r}, but the model was trained with "
                                 f"{trained}; {hint}")

    def check_features(self, audio: np.ndarray, video: np.ndarray, feature_space: str | None = None,
                       where: str = "features") -> None:
        d = self.dims
        for mod, x in (("audio", audio), ("video", video)):
            if x.shape[-1] != int(d[mod]):
                raise DataError(f"{where}: {mod} features are {x.shape[-1]}-d, but the model expects {d[mod]}-d "
                                f"(the model's feature set: {d.get('feature_set')!r}); extract them with the "
                                f"encoders the model was trained on")
        if d.get("temporal") and np.ndim(audio) == 2:
            log.warning("%s: averaged features, but the model was trained on temporal features", where)
        trained = feature_space_for_feature_set(d.get("feature_set"))  # what the feature set was extracted with
        if feature_space and trained and feature_space != trained:
            log.warning("%s: extracted with %s, but the model was trained on %s features (%s); predictions may "
                        "be meaningless", where, feature_space, d.get("feature_set"), trained)

    # ---- prediction ------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, audio, video, class_embeddings, class_names: Sequence[str] | None = None, top_k: int = 5,
                beta: float = 0.0, seen_mask=None, *, audio_mask=None, video_mask=None, audio_times=None,
                video_times=None, video_names: Sequence[str] | None = None, batch_size: int | None = None,
                feature_space: str | None = None) -> Prediction:
        """Top-k candidate classes per video.

        audio (N, Da) / video (N, Dv) (or temporal (N, T, D) with masks and times); class_embeddings:
        (C, Dt) text embeddings of the candidates (array, tensor or ``ClassEmbeddings``, whose names are
        used when `class_names` is None); beta is added to the distance of the candidates where
        `seen_mask` (C,) is True. `feature_space` (what extracted the features, if known) is compared
        with the model's feature set (a warning on a mismatch).
        """
        if isinstance(class_embeddings, ClassEmbeddings):
            self.check_text_space(class_embeddings.space, class_embeddings.dim)
            if class_names is None:
                class_names = class_embeddings.names
            text = class_embeddings.vectors
        else:
            text = class_embeddings.detach().cpu().numpy() if torch.is_tensor(class_embeddings) else class_embeddings
            text = np.asarray(text, dtype=np.float32)
            if text.ndim != 2:
                raise AvgzslError(f"class embeddings must be (C, D), got shape {text.shape}")
            self.check_text_space(None, text.shape[1])
        C = text.shape[0]
        if C == 0:
            raise AvgzslError("no candidate classes")
        if class_names is not None and len(class_names) != C:
            raise AvgzslError(f"{len(class_names)} class names for {C} class embeddings")
        beta = float(beta or 0.0)
        if seen_mask is not None:
            seen_mask = np.asarray(seen_mask, dtype=bool)
            if seen_mask.shape != (C,):
                raise AvgzslError(f"seen_mask must be ({C},), got {seen_mask.shape}")
        elif beta != 0.0:
            raise AvgzslError("beta (calibrated stacking) needs seen_mask: which candidates are seen classes")
        audio, video = np.asarray(audio, np.float32), np.asarray(video, np.float32)
        if audio.shape[0] != video.shape[0]:
            raise AvgzslError(f"{audio.shape[0]} audio rows but {video.shape[0]} video rows")
        self.check_features(audio, video, feature_space)
        N = audio.shape[0]
        if video_names is not None and len(video_names) != N:
            raise AvgzslError(f"{len(video_names)} video names for {N} videos")
        k = max(1, min(int(top_k), C))
        bs = int(batch_size or self.eval_bs)
        dev = self.device
        seen = np.zeros(C, bool) if seen_mask is None else seen_mask

        def t(a, dtype=None):
            if a is None:
                return None
            x = torch.from_numpy(np.ascontiguousarray(a))
            return x.to(device=dev, dtype=dtype or x.dtype)

        self.model.eval()
        class_emb = self.model.embed_classes(t(text, torch.float32))
        shift = torch.from_numpy(np.where(seen, np.float32(beta), np.float32(0))).to(dev)
        idx_parts, dist_parts, score_parts = [], [], []
        for s in range(0, N, bs):
            sl = slice(s, min(s + bs, N))
            batch = Batch(t(audio[sl]), t(video[sl]), t(_part(audio_mask, sl)), t(_part(video_mask, sl)),
                          t(_part(audio_times, sl), torch.float32), t(_part(video_times, sl), torch.float32))
            raw = self.model.distances(batch, class_emb).float()  # (b, C)
            cal = raw + shift  # float32 like the protocol's dist + beta
            order = torch.sort(cal, dim=1, stable=True).indices.cpu().numpy()  # ties -> lower column
            # top-1 exactly as the protocol decides it (nearest seen vs nearest unseen, metrics.py)
            top1 = predict_columns(nearest_seen_unseen(raw.cpu().numpy(), seen), beta)
            order = _move_to_front(order, top1)[:, :k]
            cal_np = cal.cpu().numpy()
            probs = torch.softmax(-cal.double(), dim=1).cpu().numpy()
            rows = np.arange(order.shape[0])[:, None]
            idx_parts.append(order.astype(np.int64))
            dist_parts.append(cal_np[rows, order].astype(np.float32))
            score_parts.append(probs[rows, order].astype(np.float32))
        return Prediction(np.concatenate(idx_parts), np.concatenate(dist_parts), np.concatenate(score_parts),
                          list(class_names) if class_names is not None else None, seen_mask, beta,
                          list(video_names) if video_names is not None else None)


def _part(a, sl):
    return None if a is None else a[sl]


def _move_to_front(order: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Rows of `order` with `first[i]` moved to position 0 (the rest keep their order)."""
    out = order.copy()
    for i in np.flatnonzero(order[:, 0] != first):
        row = order[i]
        out[i] = np.concatenate([[first[i]], row[row != first[i]]])
    return out


# --------------------------------------------------------------------------------------------------
# files in, files out (the command line's face)

def run_seen_classes(run_dir: str | Path) -> list[str] | None:
    """The seen classes of a run's test set (``RUN/eval/test.npz``), or None if it has none."""
    path = RunFolder(run_dir).test_eval_path
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "class_names" not in z or "seen_mask" not in z:
                return None
            return [str(n) for n, s in zip(z["class_names"], z["seen_mask"]) if s]
    except (ValueError, OSError):
        return None


def load_class_embeddings(classes: str | Path, predictor: Predictor, *, weights=None, clip_weights=None,
                          clap_weights=None, templates=None, device: str = "cpu",
                          progress: bool = False) -> ClassEmbeddings:
    """An embeddings file (``.npy`` + ``.json``, or a native folder) as is; a names file (one per line) is
    embedded with the encoder of the model's text space (an error if avgzsl has none for it)."""
    path = Path(classes)
    if path.is_dir() or path.suffix.lower() in (".npy", ".json"):
        return ClassEmbeddings.load(path)
    names = read_names(path)
    space = predictor.text_space.get("name")
    enc = encoder_for_space(space)
    if enc is None:
        raise TextSpaceError(f"{path}: a list of names, but the model was trained with text space {space!r} "
                             f"({predictor.text_space['dim']}-d), which no avgzsl encoder computes; pass --classes "
                             f"EMBEDDINGS made with that space's encoder")
    return embed_classes(names, enc, weights=weights, clip_weights=clip_weights, clap_weights=clap_weights,
                         templates=templates, device=device, progress=progress)


def _beta(calibrated, predictor: Predictor) -> float:
    if calibrated is None:
        return 0.0
    if str(calibrated).lower() == "auto":
        if predictor.beta is None:
            raise AvgzslError(f"{predictor.source}: the checkpoint stores no beta; pass --calibrated VALUE")
        return predictor.beta
    try:
        return float(calibrated)
    except ValueError:
        raise AvgzslError(f"--calibrated {calibrated!r}: expected a number or 'auto'") from None


def predict_files(run: str | Path, features: str | Path, classes: str | Path, *, top_k: int = 5,
                  calibrated: float | str | None = None, seen_classes: str | Path | Sequence[str] | None = None,
                  out: str | Path | None = None, weights=None, clip_weights=None, clap_weights=None, templates=None,
                  device: str = "cpu", splits: Sequence[str] | None = None,
                  progress: bool = False) -> tuple[Prediction, dict]:
    """``avgzsl predict``: read the run, the features and the classes, predict, write `out` (.csv/.json).

    Seen classes (for β, and marked in the output): `seen_classes` (a names file or list); else, when
    β is used, the seen classes of the run's test set (``RUN/eval/test.npz``). Names are matched
    case-insensitively. Returns the prediction and the metadata written with it.
    """
    predictor = Predictor.from_run(run, device=device)
    feats = read_features(features, splits)
    emb = load_class_embeddings(classes, predictor, weights=weights, clip_weights=clip_weights,
                                clap_weights=clap_weights, templates=templates, device=device, progress=progress)
    beta = _beta(calibrated, predictor)
    seen_names, seen_source = None, None
    if seen_classes is not None:
        seen_names = read_names(seen_classes) if isinstance(seen_classes, (str, Path)) else [str(s) for s in seen_classes]
        seen_source = str(seen_classes) if isinstance(seen_classes, (str, Path)) else "argument"
    elif beta != 0.0:
        seen_names = run_seen_classes(Path(run) if Path(run).is_dir() else Path(run).parent.parent)
        seen_source = "run test set (eval/test.npz)"
        if seen_names is None:
            raise AvgzslError(f"{run}: calibrated stacking needs the seen classes: pass --seen-classes FILE "
                              f"(the run folder has no eval/test.npz to take them from)")
    seen_mask = None
    if seen_names is not None:
        wanted = {n.lower() for n in seen_names}
        seen_mask = np.array([n.lower() in wanted for n in emb.names], dtype=bool)
        missing = wanted - {n.lower() for n in emb.names}
        if missing and seen_source != "run test set (eval/test.npz)":
            log.warning("%d seen class(es) are not among the candidates, e.g. %r", len(missing), sorted(missing)[0])
        if beta != 0.0 and not seen_mask.any():
            log.warning("no candidate class is a seen class: beta has no effect")
    pred = predictor.predict(feats.audio, feats.video, emb, top_k=top_k, beta=beta, seen_mask=seen_mask,
                             audio_mask=feats.audio_mask, video_mask=feats.video_mask, audio_times=feats.audio_times,
                             video_times=feats.video_times, video_names=feats.names,
                             feature_space=feats.info.get("feature_space"))
    meta = {"run": str(run), "checkpoint": predictor.source, "features": str(features), "classes_from": str(classes),
            "encoder": emb.encoder, "text_space": emb.space, "model_text_space": predictor.text_space,
            "seen_from": seen_source}
    if out is not None:
        pred.write(out, **meta)
    return pred, meta


def format_prediction(pred: Prediction, max_videos: int | None = None) -> str:
    """Human-readable lines: per video, its top-k as `class  distance  score%`."""
    lines = []
    names = pred.names
    n = len(pred) if max_videos is None else min(len(pred), max_videos)
    for i in range(n):
        video = pred.video_names[i] if pred.video_names is not None else f"video {i}"
        lines.append(video)
        for r in range(pred.indices.shape[1]):
            j = int(pred.indices[i, r])
            label = names[i][r] if names is not None else str(j)
            mark = " (seen)" if pred.seen_mask is not None and pred.seen_mask[j] else ""
            lines.append(f"  {r + 1}. {label}{mark}  distance {pred.distances[i, r]:.4f}  "
                         f"score {100 * pred.scores[i, r]:.1f}%")
    if n < len(pred):
        lines.append(f"... {len(pred) - n} more video(s)")
    return "\n".join(lines)
