"""Synthetic stand-ins for the UCF / ActivityNet / VGGSound GZSL benchmarks, in their on-disk layout.

`make_synthetic("ucf", out)` writes a folder that `avgzsl.data.load_benchmark` reads exactly like the real
ClipClap-GZSL / AVCA release (class-split lists, w2v/CLIP name CSVs, per-class feature pickles, text
dicts; v2 adds a names + descriptions class text), with the real class counts per split and videos per
class (scaled by `scale`). docs/synthetic.md has the details.

Two latent models ("generators") fill that layout; the writer below is shared and calls the chosen
model's `params(seed, plan, fs, knobs)` and `videos(params, c, n, seed, temporal, dtype)`:

* "v2" (the default): data/synthetic_v2.py, with the real benchmark's class names and knobs
  (`SynthKnobs`): text only partly predictive, nonlinear modality maps, per-class modality reliability,
  missing modalities, modes per class, class-dependent noise and a seen/unseen domain shift.
* "linear" (v1, below): pseudo-word class names and a linear latent model.

v1 latent model (why: zero-shot transfer must be possible but imperfect, audio and video must each carry
only part of the class information, and fusing them must help; nothing here is tuned for any model):

* Topics. K shared prototypes p_1..p_K in R^d (d = D_LAT). Class c has Dirichlet mixture weights w_c
  and latent z_c = a * unit(w_c @ P) * sqrt(d) + b * e_c (a^2 + b^2 = 1), e_c ~ N(0, I) class-specific.
  Unseen classes are mixtures of the same topics as seen ones, so structure learned on seen classes
  transfers; the class-specific part e_c and the few seen classes (UCF: 30 < d) make it imperfect.
* Text. Each text encoder (CLIP 512-d, CLAP 1024-d, word2vec 300-d) is its own fixed random linear map
  of (z_c + s_t * eta_c), eta_c ~ N(0, I) drawn per class and encoder (a label describes its class only
  approximately), L2-normalised.
* Features. Audio sees only latent dims [0, 40), video only [24, 64) (16 shared): each modality carries
  part of the class, so text is best predicted from both. Class mean in modality m:
  mu_mc = r_mc * (z_c + s_o * xi_mc), where xi_mc is a class-level modality-specific offset that the
  text does not describe (learnable on seen classes, useless for unseen ones: the seen/unseen gap) and
  r_mc is a per-class reliability (log r_ac = +beta*s_c + ..., log r_vc = -beta*s_c + ...: some classes
  are audio-dominant, others visual-dominant). A video draws h = mu_mc + s_i * eps (intra-class
  variation), then x = unit(h_seen_dims @ M_m + o_m + s_n * n) with M_m a fixed random map to the
  feature dim, o_m a shared offset (the "cone" every CLIP/CLAP embedding sits in) and n per-coordinate
  noise. P_MISSING of the videos have one modality (coin flip which) uninformative: h = 0.
* Temporal. T ~ U{5..10} steps per video and modality (drawn independently); step t is unit(pre-
  normalisation vector + s_step * noise), fps 1.0.

Real-file quirks kept on purpose (the reader meets them on real data): all_class.txt is unsorted and
lists unused classes; one UCF class is spelled with a different case in all_class.txt than in the
split and feature files; VGGSound's cls_split test-unseen list lacks its final newline and its w2v
CSV has a third column.

Determinism (both generators): everything comes from numpy.random.default_rng: global parameters
from [seed, 0], the videos of class c from [seed, 1, c]. Class names, split membership and video counts
(the class plan, data/synthetic_plan.py) depend on `like`, `scale` and the generator only, not on `seed`,
as with a real benchmark whose features one re-extracts; the one exception is VGGSound's CSV
`category` column, which names each class's dominant latent topic.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import pickle
import secrets
import shutil
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from ..io import write_errors
from ..spaces import text_space_name
from .cache import default_cache
from . import synthetic_v2
from .synthetic_plan import LIKES, _split_classes, class_plan, like_spec
from .synthetic_v2 import SynthKnobs, knobs_tag, resolve_knobs
from .types import STAGE_FOLDERS

log = logging.getLogger("avgzsl.data")

# class_plan, like_spec and LIKES live in data/synthetic_plan.py and are part of this module's API too
__all__ = ["make_synthetic", "synthetic_root", "class_plan", "like_spec", "LIKES", "method_folder", "FEATURE_DIMS",
           "STAGES", "GENERATORS", "SynthKnobs"]

STAGES = STAGE_FOLDERS  # the six stage folders, in the layout's order

# Feature dims (audio, video, text parts) per feature set, as in the real releases.
FEATURE_DIMS = {
    "clipclap": dict(audio=1024, video=512, text={"clip": 512, "clap": 1024}, dtype=np.float16),
    "cls": dict(audio=128, video=4096, text={"w2v": 300}, dtype=np.float32),
    "main": dict(audio=512, video=512, text={"w2v": 300}, dtype=np.float32),
}

# ---- v1 ("linear") latent model constants (documented in the module docstring and docs/synthetic.md) ----
D_LAT = 64  # latent semantic dims
N_TOPICS = 12  # shared topic prototypes
DIRICHLET_ALPHA = 0.3  # sparse mixtures: most classes are dominated by 1-3 topics
CLASS_SPECIFIC = 0.6  # b: weight of the class-specific latent part (a = sqrt(1 - b^2))
TEXT_NOISE = 0.8  # s_t: class-level noise of each text encoder
MOD_OFFSET = 0.8  # s_o: class-level modality-specific offset (not described by text)
INTRA = 1.25  # s_i: per-video latent variation
OBS_NOISE = 1.0  # s_n: per-coordinate observation noise (signal is ~1 per coordinate)
CONE = 1.0  # |o_m| per coordinate: shared offset of all embeddings of a modality
AUDIO_DIMS = (0, 40)  # latent dims audio sees
VIDEO_DIMS = (24, 64)  # latent dims video sees
RELIABILITY = 0.35  # beta: spread of the audio-vs-visual dominance per class
P_MISSING = 0.10  # fraction of videos with one uninformative modality
T_RANGE = (5, 10)  # temporal steps per video (inclusive)
STEP_NOISE = 0.5  # per-step noise, relative to the per-coordinate signal scale
FPS = 1.0


def method_folder(feature_set: str, temporal: bool) -> str:
    """features/<method>/ folder name: clipclap | cls | main, plus _non_averaged for temporal features."""
    return feature_set + ("_non_averaged" if temporal else "")


# ---------------------------------------------------------------- latent model

def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _latent_params(seed: int, n_classes: int, fs: dict) -> dict:
    """Global parameters: class latents, text embeddings, modality maps and class means."""
    rng = np.random.default_rng([seed, 0])
    topics = rng.standard_normal((N_TOPICS, D_LAT))
    mix = rng.dirichlet(np.full(N_TOPICS, DIRICHLET_ALPHA), size=n_classes)
    shared = _unit(mix @ topics) * np.sqrt(D_LAT)
    z = np.sqrt(1 - CLASS_SPECIFIC**2) * shared + CLASS_SPECIFIC * rng.standard_normal((n_classes, D_LAT))
    text = {}
    for part, dim in fs["text"].items():  # each encoder: its own map and its own label noise
        m = rng.standard_normal((D_LAT, dim)) / np.sqrt(D_LAT)
        text[part] = _unit((z + TEXT_NOISE * rng.standard_normal(z.shape)) @ m).astype(np.float32)
    dom = rng.standard_normal(n_classes)  # >0: audio-dominant class, <0: visual-dominant
    mods = {}
    for sign, (mod, (lo, hi)) in zip((1, -1), (("audio", AUDIO_DIMS), ("video", VIDEO_DIMS))):
        dim = fs[mod]
        rel = np.exp(RELIABILITY * (sign * dom + 0.5 * rng.standard_normal(n_classes)))
        offset = rng.standard_normal((n_classes, D_LAT))
        mods[mod] = dict(
            lo=lo, hi=hi,
            mean=(rel[:, None] * (z + MOD_OFFSET * offset))[:, lo:hi].astype(np.float32),  # (C, seen)
            # unit-variance output per coordinate for a unit-variance latent
            map=(rng.standard_normal((hi - lo, dim)) / np.sqrt(hi - lo)).astype(np.float32),
            cone=(CONE * rng.standard_normal(dim)).astype(np.float32),
        )
    return dict(z=z, mix=mix, text=text, mods=mods)


def _linear_params(seed: int, plan: dict, fs: dict, knobs) -> dict:
    return _latent_params(seed, len(plan["names"]), fs)


def _class_videos(params: dict, c: int, n: int, seed: int, temporal: bool, dtype) -> dict:
    """All n videos of class c (every stage at once): {"audio"/"video": list of arrays}."""
    rng = np.random.default_rng([seed, 1, c])
    missing = rng.random(n) < P_MISSING
    audio_missing = rng.random(n) < 0.5
    out = {}
    for mod in ("audio", "video"):
        p = params["mods"][mod]
        k, dim = p["map"].shape
        h = p["mean"][c] + INTRA * rng.standard_normal((n, k), dtype=np.float32)
        h[missing & (audio_missing if mod == "audio" else ~audio_missing)] = 0.0  # uninformative
        # einsum, not `@`: OpenBLAS worker threads spin after each small call and, on a busy 2-core
        # machine, starve the rest of the loop (measured 5-10x slower); einsum's own loop is serial.
        pre = np.einsum("nk,kd->nd", h, p["map"])
        pre += p["cone"]
        pre += OBS_NOISE * rng.standard_normal((n, dim), dtype=np.float32)
        if not temporal:
            out[mod] = list(_unit(pre).astype(dtype))
            continue
        steps = rng.integers(T_RANGE[0], T_RANGE[1] + 1, size=n)
        x = np.repeat(pre, steps, axis=0)
        x += STEP_NOISE * rng.standard_normal(x.shape, dtype=np.float32)
        out[mod] = np.split(_unit(x).astype(dtype), np.cumsum(steps)[:-1])
    return out


# generator -> (class-name source of the plan, global parameters, the videos of one class)
GENERATORS = {
    "v2": ("real", synthetic_v2.latent_params, synthetic_v2.class_videos),
    "linear": ("pseudo", _linear_params, _class_videos),
}


# ---------------------------------------------------------------- writing

def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=4))  # fixed protocol: same seed -> byte-identical files


def _write_lines(path: Path, lines: list[str], trailing_newline: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""))


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    path.write_text(buf.getvalue())


def _write_class_split(root: Path, plan: dict, params: dict) -> None:
    spec, names, listed = plan["spec"], plan["names"], plan["listed"]
    cs = root / "class-split"
    _write_lines(cs / "all_class.txt", [listed[c] for c in plan["all_order"]])
    for split in ("main_split", "cls_split"):
        for stage, cls in _split_classes(plan, split).items():
            lines = sorted((names[c][0] for c in cls), key=str.lower)
            # the real VGGSound cls_split/stage_2_test_unseen.txt lacks its final newline
            last_nl = not (spec.ds == "vggsound" and split == "cls_split" and stage == "stage_2_test_unseen")
            _write_lines(cs / split / f"{stage}.txt", lines, last_nl)
    order = plan["all_order"]
    if spec.ds == "vggsound":  # the real VGGSound CSV has a third column; ours = dominant topic
        dom = params["mix"].argmax(1)
        _write_csv(cs / "vggsound_w2v_class_names.csv", ["original", "manual", "category"],
                   [[listed[c], names[c][1], f"topic {dom[c]:02d}"] for c in order])
    else:
        _write_csv(cs / f"{spec.ds}_w2v_class_names.csv", ["original", "manual"],
                   [[listed[c], names[c][1]] for c in order])
    if spec.ds == "ucf":
        _write_csv(cs / "ucf_clip_class_names.csv", ["original", "manual", "clip_class_name"],
                   [[listed[c], names[c][1], names[c][2]] for c in order])


def _write_text(feat: Path, plan: dict, params: dict, feature_set: str) -> None:
    """Text dicts keyed like the real files: the CLIP-text dict by clip_class_name for UCF (manual
    otherwise), the WavCaps/CLAP dict and the word2vec dict by manual; entries for every class of
    all_class.txt, in all_class.txt order."""
    spec, names = plan["spec"], plan["names"]
    files = {"clip": (f"word_embeddings_{spec.ds}_normed.npy", 2 if spec.ds == "ucf" else 1),
             "clap": (f"wavcaps_word_embeddings_{spec.ds}_normed.npy", 1),
             "w2v": (f"word_embeddings_{spec.ds}_normed.npy", 1)}
    (feat / "text").mkdir(parents=True, exist_ok=True)
    for part, emb in params["text"].items():
        fname, key = files[part]
        np.save(feat / "text" / fname, {names[c][key]: emb[c] for c in plan["all_order"]}, allow_pickle=True)
    if params.get("descriptions"):  # v2: the class text of names + descriptions (synthetic_v2.py)
        synthetic_v2.write_class_text_descriptions(feat / "text", [plan["listed"][c] for c in plan["all_order"]], {
            p: v[plan["all_order"]] for p, v in params["descriptions"].items()}, text_space_name(feature_set))


def _write_features(feat: Path, plan: dict, params: dict, seed: int, temporal: bool, dtype,
                    progress: bool, videos=_class_videos) -> int:
    names, counts = plan["names"], plan["counts"]
    classes = plan["s1"] + plan["u1"] + plan["u2"]
    it = classes
    if progress:
        it = tqdm(classes, desc="synth classes", unit="class")
    n_written = 0
    for c in it:
        own = counts[c]
        n = sum(own.values())
        vids = videos(params, c, n, seed, temporal, dtype)
        vnames = [f"v_{names[c][0]}_{k:05d}" for k in range(n)]  # unique across the dataset
        start, parts = 0, {}
        for stage, k in own.items():  # each stage gets its own, fresh videos
            parts[stage] = list(range(start, start + k))
            start += k
        # stage_2_train = the class's stage-1 videos (same names and features), as in the release
        s1 = [i for s in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen") for i in parts.get(s, [])]
        if s1:
            parts["stage_2_train"] = s1
        for stage, rows in parts.items():
            vn = [vnames[i] for i in rows]
            for mod in ("audio", "video"):
                _dump(feat / mod / stage / f"{names[c][0]}.pkl",
                      {"features": [vids[mod][i] for i in rows], "video_names": vn, "fps": FPS})
            n_written += len(vn)
    return n_written


def _install(tmp: Path, out: Path) -> None:
    """Move the finished tree into place; an existing (allowed) `out` is swapped out, then removed."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
        os.rename(out, old / "x")
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def make_synthetic(like: str, out: str | Path, *, scale: float = 1.0, seed: int = 0,
                   temporal: bool = False, feature_set: str = "clipclap", progress: bool = False,
                   overwrite: bool = False, generator: str = "v2",
                   knobs: SynthKnobs | dict | None = None) -> Path:
    """Write a synthetic benchmark shaped like `like` (ucf | activitynet | vggsound) to `out`.

    Same layout as the real release (see module docstring and docs/synthetic.md). Videos per class
    and split = the real counts times `scale` (at least 1). `generator`: "v2" (default) or "linear"
    (v1); `knobs`: v2's SynthKnobs (taken whole), or a dict over `default_knobs(like)` (unknown keys raise
    DataError; "linear" takes none). Built in `<out>.tmp-*` beside `out`, then renamed into place;
    refuses a non-empty `out` unless `overwrite`. Returns `out`.
    """
    spec = like_spec(like)
    knobs = _check_generator(generator, knobs, spec.ds)
    if feature_set not in FEATURE_DIMS:
        raise DataError(f"unknown feature_set {feature_set!r}; choose one of {sorted(FEATURE_DIMS)}")
    if not (scale > 0 and np.isfinite(scale)):
        raise DataError(f"scale must be a positive number, got {scale!r}")
    if int(seed) < 0:
        raise DataError(f"seed must be >= 0, got {seed!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} exists and is not empty (pass overwrite=True to replace it)")
    fs = FEATURE_DIMS[feature_set]
    name_source, model_params, model_videos = GENERATORS[generator]
    plan = class_plan(spec.ds, scale, names=name_source)
    with write_errors(out):  # read-only, no permission, disk full: one line naming `out`
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_tmp_dir(out)
        try:
            params = model_params(int(seed), plan, fs, knobs)
            _write_class_split(tmp, plan, params)
            feat = tmp / "features" / method_folder(feature_set, temporal)
            _write_text(feat, plan, params, feature_set)
            n = _write_features(feat, plan, params, int(seed), temporal, fs["dtype"], progress, model_videos)
            manifest = dict(writer="avgzsl.data.synthetic", generator=generator, like=spec.name, scale=scale,
                            seed=int(seed), temporal=temporal, feature_set=feature_set,
                            knobs=None if knobs is None else dataclasses.asdict(knobs), videos_written=n,
                            classes_listed=len(plan["names"]), classes_used=len(plan["counts"]))
            (tmp / "synthetic.json").write_text(json.dumps(manifest, indent=2) + "\n")
            _install(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def synthetic_root(like: str, scale: float = 1.0, seed: int = 0, *, temporal: bool = False,
                   cache: str | Path | None = None, out: str | Path | None = None, progress: bool = False,
                   generator: str = "v2", knobs: SynthKnobs | dict | None = None) -> Path:
    """The folder of the synthetic `like` benchmark at (`scale`, `seed`), written on first use.

    The folder is `<cache>/synthetic/<like>-scale<scale:g>-seed<seed>[-temporal][-linear][-k<hash>]`
    (`cache` defaults to `default_cache()`, data/cache.py), or `out` when given: "-linear" for the v1
    generator, "-k" + 8 hex digits of a hash of the knobs that differ from `default_knobs(like)`. A folder
    with `class-split/` is taken as written unless its synthetic.json names another generator or other
    knobs, or it lacks a file of today's generator (synthetic_v2.complete): then it is written anew.
    """
    ds = like_spec(like).ds
    knobs = _check_generator(generator, knobs, ds)
    if out is not None:
        root = Path(out)
    else:
        tag = ("-temporal" if temporal else "") + ("-linear" if knobs is None else knobs_tag(knobs, ds))
        base = default_cache() if cache is None else Path(cache)
        root = base / "synthetic" / f"{like}-scale{scale:g}-seed{seed}{tag}"
    stale = (root / "class-split").exists() and not (_manifest_matches(root, generator, knobs)
                                                     and synthetic_v2.complete(root, generator))
    if stale:
        log.warning("%s holds synthetic data of another generator or knobs; writing it anew", root)
    if stale or not (root / "class-split").exists():
        log.info("writing the synthetic %s-like benchmark to %s", like, root)
        make_synthetic(like, root, scale=scale, seed=seed, temporal=temporal, progress=progress,
                       generator=generator, knobs=knobs, overwrite=stale)
    return root


def _check_generator(generator: str, knobs, like: str) -> SynthKnobs | None:
    """The knobs (None for "linear"; v2: resolve_knobs); DataError: unknown generator, knobs to "linear"."""
    if generator not in GENERATORS:
        raise DataError(f"unknown synthetic generator {generator!r}; choose one of {sorted(GENERATORS)}")
    if generator == "linear":
        if knobs is not None and knobs != {}:
            raise DataError("synthetic knobs apply to generator 'v2' only, not 'linear'")
        return None
    return resolve_knobs(knobs, like)


def _manifest_matches(root: Path, generator: str, knobs: SynthKnobs | None) -> bool:
    """Whether root/synthetic.json records this generator and knobs (a folder without one: taken as is).

    Folders written before v2 record generator "avgzsl.data.synthetic" and no knobs: that is v1."""
    try:
        m = json.loads((root / "synthetic.json").read_text())
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    if not isinstance(m, dict):
        return False
    gen = "linear" if m.get("generator") == "avgzsl.data.synthetic" else m.get("generator")
    want = None if knobs is None else dataclasses.asdict(knobs)
    return gen == generator and m.get("knobs") == want


def _new_tmp_dir(out: Path) -> Path:
    """`<out>.tmp-<random>` beside `out`, made with the umask's mode like any folder (mkdtemp's is 0700)."""
    while True:
        tmp = out.parent / f"{out.name}.tmp-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
