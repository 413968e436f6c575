"""Synthetic stand-ins for the UCF / ActivityNet / VGGSound GZSL benchmarks, in their on-disk layout.

`make_synthetic("ucf", out)` writes a folder that `avgzsl.data.load_benchmark` reads exactly like the real
ClipClap-GZSL / AVCA release (class-split lists, w2v/CLIP name CSVs, per-class feature pickles, text
embedding dicts), with the real benchmarks' class counts per split and videos per class (scaled by
`scale`). Class names are synthetic pseudo-words; no real name is used. docs/synthetic.md has the details.

Latent model (why: zero-shot transfer must be possible but imperfect, audio and video must each carry
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
* Temporal. T ~ U{5..10} steps per video and modality (drawn independently); step t is
  unit(pre-normalisation vector + s_step * noise), fps 1.0.

Real-file quirks kept on purpose (the reader meets them on real data): all_class.txt is unsorted and
lists unused classes; one UCF class is spelled with a different case in all_class.txt than in the
split and feature files; VGGSound's cls_split test-unseen list lacks its final newline and its w2v
CSV has a third column.

Determinism: everything comes from numpy.random.default_rng: global parameters from [seed, 0], the
videos of class c from [seed, 1, c]. Class names, split membership and video counts do not depend on
`seed` (only on `like` and `scale`), as with a real benchmark whose features one re-extracts; the one
exception is VGGSound's CSV `category` column, which names each class's dominant latent topic.
"""
from __future__ import annotations

import csv
import io
import json
import os
import pickle
import secrets
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avgzsl.data.types import STAGE_FOLDERS
from avgzsl.errors import DataError
from avgzsl.io import write_errors

STAGES = STAGE_FOLDERS  # the six stage folders, in the layout's order

# Feature dims (audio, video, text parts) per feature set, as in the real releases.
FEATURE_DIMS = {
    "clipclap": dict(audio=1024, video=512, text={"clip": 512, "clap": 1024}, dtype=np.float16),
    "cls": dict(audio=128, video=4096, text={"w2v": 300}, dtype=np.float32),
    "main": dict(audio=512, video=512, text={"w2v": 300}, dtype=np.float32),
}

# ---- latent model constants (documented in the module docstring and docs/synthetic.md) ----
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

# stage_1_train / stage_1_val_seen videos per class, pooled over UCF (3174/353) and ActivityNet
# (9204/1023); VGGSound's train counts are missing from the public count table, so we use this ratio.
TRAIN_PER_VAL_SEEN = (3174 + 9204) / (353 + 1023)


@dataclass(frozen=True)
class _Like:
    """One benchmark's shape. Video counts per class come from the real release (counts only, no names).

    s1: "train/val_seen/test_seen" per seen class (VGGSound: "val_seen/test_seen", train derived),
    u1: "val_unseen/test_seen" per stage-1 unseen class, u2: "test_unseen" per stage-2 unseen class.
    Tokens are sorted and run-length encoded ("x*n" = n classes with x); which synthetic class gets
    which tuple is fixed by the class-name generator, so counts carry no link to real class names.
    """

    name: str  # folder-style name: UCF, ActivityNet, VGGSound
    ds: str  # file-name tag: ucf, activitynet, vggsound
    n_extra: int  # classes in all_class.txt that no split uses (real UCF: 101 listed, 51 used)
    cls_unseen: int  # classes kept in cls_split/stage_2_test_unseen.txt (main keeps all of u2)
    s1: str
    u1: str
    u2: str


LIKES = {
    "ucf": _Like(
        "UCF", "ucf", n_extra=50, cls_unseen=6,
        s1="85/9/10 87/10/11 89/10/11 90/10/11*2 91/10/11*2 93/10/11 94/10/12 101/11/12 102/11/12 "
           "102/11/13*3 102/12/13 105/12/13 106/12/13 109/12/13 111/12/14*2 111/13/14 112/13/14 "
           "113/13/14 117/13/14 117/13/15 121/14/15 125/14/16 128/14/16 132/15/16 135/15/17",
        u1="98/11 99/11 103/11 111/12 117/13 119/13 126/14 130/15 132/15 136/15 148/16*2",
        u2="110 131*3 136 155*2 157 161",
    ),
    "activitynet": _Like(
        "ActivityNet", "activitynet", n_extra=0, cls_unseen=48,
        s1="49/5/6 51/6/6 52/6/6*2 55/6/7 56/6/7 57/6/7 58/6/7*2 58/7/7 59/7/7*2 60/7/7*2 60/7/8 "
           "61/7/7 61/7/8 62/7/8 63/7/8 64/7/8*2 65/7/8 66/7/8*2 67/7/8*2 67/8/8 68/8/9 70/8/9*4 "
           "75/8/9*2 76/8/9 76/9/9 76/9/10*2 80/9/10 81/9/10 82/9/10 83/9/10 84/9/10*3 85/9/10 "
           "87/10/11 88/10/11 91/10/11*3 92/10/11*3 93/10/11 93/10/12*2 94/10/12 95/11/12*2 96/11/12 "
           "98/11/12*2 100/11/12 101/11/12 102/11/13 103/12/13 104/12/13 106/12/13 107/12/13 "
           "109/12/14 111/12/14*2 112/12/14 115/13/14 119/13/15*2 120/13/15 121/13/15 121/14/15*2 "
           "122/14/15*2 123/14/15 126/14/16*3 128/14/16 132/15/16 134/15/17 137/15/17 139/15/17 "
           "141/16/17 146/16/18 152/17/19 159/18/20 166/18/20 181/20/22*2",
        u1="50/6 51/6 53/6*2 55/6 57/6 59/6 62/7 63/7 64/7 68/7*2 69/8*2 70/8 74/8 75/8*2 76/8 77/9*2 "
           "78/9 81/9 83/9*3 84/9*2 85/10*2 87/10 91/10*2 92/10*2 93/10 94/11*2 96/11*2 98/11*2 "
           "99/11*2 108/12*2 116/13 118/13 128/14 147/16 151/17",
        u2="45 46*2 53*2 55 58 61 63 66*2 68 69*2 70 72 75 76 77*2 78 79 80*2 81 82 86*2 87 88*2 91 "
           "93 94 95 97*3 99*2 105 106*3 107 109 110 111 142 155",
    ),
    "vggsound": _Like(
        "VGGSound", "vggsound", n_extra=33, cls_unseen=64,
        s1="16/19 18/20*11 19/21*2 20/22 20/23 23/25*3 23/26 24/26*3 25/27 25/28 27/30 29/32*3 29/33 "
           "30/33 31/35 32/36 33/37 35/39*4 36/40*3 37/41 38/42*2 39/43 39/44 40/44 40/45 41/45 "
           "41/46 42/46 43/47*2 43/48*2 44/49*2 45/50 46/51*2 47/53 49/55 50/55*2 50/56*2 51/57 "
           "53/59*5 53/60 54/60*2 55/61 57/63 57/64 58/65 59/65 61/68 63/70 64/72 65/72 67/75 68/75 "
           "69/76 70/78 71/79 73/81 73/82*2 74/82 74/83 75/84*2 79/88 82/91 83/92 84/93 84/94 "
           "86/96*2 87/96 87/97*2 88/98 89/99*5 90/100 91/101*2 94/105*7 95/105*16",
        u1="44/5*3 45/5*66",
        u2="50*69",
    ),
}


def _decode(spec: str) -> list[tuple[int, ...]]:
    """'3/4*2 5/6' -> [(3, 4), (3, 4), (5, 6)]."""
    out = []
    for tok in spec.split():
        body, _, rep = tok.partition("*")
        out += [tuple(int(v) for v in body.split("/"))] * int(rep or 1)
    return out


def like_spec(like: str) -> _Like:
    key = str(like).lower().replace("-gzsl", "")
    if key not in LIKES:
        raise DataError(f"unknown benchmark shape {like!r}; choose one of {sorted(LIKES)}")
    return LIKES[key]


def method_folder(feature_set: str, temporal: bool) -> str:
    """features/<method>/ folder name: clipclap | cls | main, plus _non_averaged for temporal features."""
    return feature_set + ("_non_averaged" if temporal else "")


# ---------------------------------------------------------------- class names and splits

_CONS = list("bdfgklmnprstvz")
_VOWS = list("aeiou")


def _word(rng: np.random.Generator) -> str:
    n = int(rng.integers(2, 4))
    w = "".join(str(rng.choice(_CONS)) + str(rng.choice(_VOWS)) for _ in range(n))
    return w + (str(rng.choice(list("nrsk"))) if rng.random() < 0.3 else "")


def _class_names(spec: _Like, n: int) -> list[tuple[str, str, str]]:
    """n unique (original, manual, clip) names from a generator fixed by the dataset shape.

    original: CamelCase (UCF style); about 5% start with an all-caps word ("ZOKABaru", like "BMX") so
    case-sensitive and case-insensitive sorts differ. manual: spaced lower-case words, reversed word
    order for about 20% so sorted(original) and sorted(manual) orders differ. clip: = manual except
    about 9% (the real ucf_clip_class_names.csv differs from manual for 9 of 101 classes).
    """
    rng = np.random.default_rng(zlib.crc32(spec.ds.encode()))
    seen_o, seen_m, seen_c, names = set(), set(), set(), []
    while len(names) < n:
        words = [_word(rng) for _ in range(int(rng.integers(2, 4)))]
        caps = rng.random() < 0.05
        original = "".join(w.upper() if (caps and i == 0) else w.capitalize() for i, w in enumerate(words))
        manual = " ".join(words[::-1] if rng.random() < 0.2 else words)
        clip = manual + " " + _word(rng) if rng.random() < 0.09 else manual
        if original.lower() in seen_o or manual in seen_m or clip in seen_c:
            continue  # the reader rejects names equal up to case; keep every column unique too
        seen_o.add(original.lower()), seen_m.add(manual), seen_c.add(clip)
        names.append((original, manual, clip))
    return names


def _case_variant(name: str) -> str:
    """The same name with its second capital letter lower-cased ("HandStand" -> "Handstand")."""
    caps = [i for i, ch in enumerate(name) if ch.isupper()]
    i = caps[1]
    return name[:i] + name[i].lower() + name[i + 1:]


def class_plan(like: str, scale: float = 1.0) -> dict:
    """Names, split membership and per-class video counts (no features). Independent of the seed.

    Returns dict(names=[(original, manual, clip)], listed=[spelling in all_class.txt and the CSVs],
    all_order=[class idx in all_class.txt order], s1/u1/u2/extra=[class idx], cls_u2=[class idx],
    counts={class idx: {stage: n videos}}) where counts holds each class's own stages (stage_2_train
    is derived: S1 train+val_seen, U1 val_unseen). `original` is the spelling of the split files,
    feature files and video names; `listed` equals it except for one UCF class (see _case_variant).
    """
    spec = like_spec(like)
    s1, u1, u2 = _decode(spec.s1), _decode(spec.u1), _decode(spec.u2)
    n_used = len(s1) + len(u1) + len(u2)
    names = _class_names(spec, n_used + spec.n_extra)
    rng = np.random.default_rng(zlib.crc32(spec.ds.encode()) + 1)
    # the generator's order is random w.r.t. the names, so taking groups in order is an unbiased draw
    idx = list(range(len(names)))
    g_s1, g_u1 = idx[:len(s1)], idx[len(s1):len(s1) + len(u1)]
    g_u2, extra = idx[len(s1) + len(u1):n_used], idx[n_used:]
    sc = lambda v: max(1, int(round(v * scale)))  # noqa: E731  (at least one video per class & split)
    counts = {}
    for c, t in zip(g_s1, s1):
        tr = t[0] if len(t) == 3 else round(TRAIN_PER_VAL_SEEN * t[0])
        vs, ts = t[-2], t[-1]
        counts[c] = {"stage_1_train": sc(tr), "stage_1_val_seen": sc(vs), "stage_2_test_seen": sc(ts)}
    for c, (vu, ts) in zip(g_u1, u1):
        counts[c] = {"stage_1_val_unseen": sc(vu), "stage_2_test_seen": sc(ts)}
    for c, (tu,) in zip(g_u2, u2):
        counts[c] = {"stage_2_test_unseen": sc(tu)}
    cls_u2 = sorted(rng.choice(g_u2, size=spec.cls_unseen, replace=False).tolist())
    listed = [n[0] for n in names]
    if spec.ds == "ucf":  # the real UCF lists one class as HandstandPushups in all_class.txt and
        listed[g_s1[0]] = _case_variant(names[g_s1[0]][0])  # HandStandPushups in the split files
    all_order = rng.permutation(len(names)).tolist()  # all_class.txt is deliberately unsorted
    return dict(spec=spec, names=names, listed=listed, all_order=all_order, s1=g_s1, u1=g_u1, u2=g_u2, extra=extra,
                cls_u2=cls_u2, counts=counts)


def _split_classes(plan: dict, split: str) -> dict[str, list[int]]:
    s1, u1 = plan["s1"], plan["u1"]
    u2 = plan["u2"] if split == "main_split" else plan["cls_u2"]
    return {"stage_1_train": s1, "stage_1_val_seen": s1, "stage_1_val_unseen": u1,
            "stage_2_train": s1 + u1, "stage_2_test_seen": s1 + u1, "stage_2_test_unseen": u2}


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


# ---------------------------------------------------------------- writing

def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)  # fixed protocol: same seed -> byte-identical files


def _write_lines(path: Path, lines: list[str], trailing_newline: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""))


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
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
        np.save(feat / "text" / fname, {names[c][key]: emb[c] for c in plan["all_order"]},
                allow_pickle=True)


def _write_features(feat: Path, plan: dict, params: dict, seed: int, temporal: bool, dtype,
                    progress: bool) -> int:
    names, counts = plan["names"], plan["counts"]
    classes = plan["s1"] + plan["u1"] + plan["u2"]
    it = classes
    if progress:
        from tqdm import tqdm
        it = tqdm(classes, desc="synth classes", unit="class")
    n_written = 0
    for c in it:
        own = counts[c]
        n = sum(own.values())
        vids = _class_videos(params, c, n, seed, temporal, dtype)
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
                   overwrite: bool = False) -> Path:
    """Write a synthetic benchmark shaped like `like` (ucf | activitynet | vggsound) to `out`.

    Same layout as the real release (see module docstring and docs/synthetic.md). Videos per class
    and split = the real counts times `scale` (at least 1). Built in `<out>.tmp-*` beside `out`, then
    renamed into place; refuses a non-empty `out` unless `overwrite`. Returns `out`.
    """
    spec = like_spec(like)
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
    plan = class_plan(spec.ds, scale)
    with write_errors(out):  # read-only, no permission, disk full: one line naming `out`
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_tmp_dir(out)
        try:
            params = _latent_params(int(seed), len(plan["names"]), fs)
            _write_class_split(tmp, plan, params)
            feat = tmp / "features" / method_folder(feature_set, temporal)
            _write_text(feat, plan, params, feature_set)
            n = _write_features(feat, plan, params, int(seed), temporal, fs["dtype"], progress)
            manifest = dict(generator="avgzsl.data.synthetic", like=spec.name, scale=scale, seed=int(seed),
                            temporal=temporal, feature_set=feature_set, videos_written=n,
                            classes_listed=len(plan["names"]), classes_used=len(plan["counts"]))
            (tmp / "synthetic.json").write_text(json.dumps(manifest, indent=2) + "\n")
            _install(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def _new_tmp_dir(out: Path) -> Path:
    """`<out>.tmp-<random>` beside `out`, made with the umask's mode like any folder (mkdtemp's is 0700)."""
    while True:
        tmp = out.parent / f"{out.name}.tmp-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
