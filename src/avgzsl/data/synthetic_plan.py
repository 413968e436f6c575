"""The shapes of the synthetic benchmarks: class names, split membership and videos per class.

What `make_synthetic` (`data/synthetic.py`) lays out before any feature is drawn: for each real
benchmark (UCF-GZSL, ActivityNet-GZSL, VGGSound-GZSL) its class counts per split and videos per class
from the real release (counts only), class names (synthetic pseudo-words for the v1 "linear" data, the
real benchmark's names from data/class_names.json for v2), and the real files' naming quirks (an
unsorted all_class.txt with unused classes, one UCF class spelled with another case). Nothing here
depends on the seed; docs/synthetic.md has the details.
"""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["LIKES", "like_spec", "class_plan", "real_class_names", "TRAIN_PER_VAL_SEEN"]

CLASS_NAMES = Path(__file__).resolve().parent / "class_names.json"  # written by scripts/make_class_names.py

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


@lru_cache(maxsize=None)
def real_class_names(ds: str) -> tuple[str, ...]:
    """The real benchmark's class names (all_class.txt spelling and order), from data/class_names.json."""
    names = json.loads(CLASS_NAMES.read_text())[ds]
    return tuple(names)


def _split_camel(name: str) -> str:
    """'ApplyEyeMakeup' -> 'Apply Eye Makeup' (runs of capitals stay one word: 'BMXRide' -> 'BMX Ride')."""
    return " ".join(re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z0-9]*|[a-z0-9]+", name)) or name


def _real_names(spec: _Like, n: int) -> list[tuple[str, str, str]]:
    """The n real names as (original, manual, clip), in a fixed shuffled order (drawn from the shape only).

    original: the all_class.txt spelling; manual: UCF CamelCase split into words, the name itself
    otherwise; clip (UCF's clip_class_name column): = manual.
    """
    real = real_class_names(spec.ds)
    if len(real) != n:
        raise DataError(f"data/class_names.json lists {len(real)} {spec.name} classes, the plan needs {n}")
    order = np.random.default_rng(zlib.crc32(spec.ds.encode()) + 2).permutation(n)
    out = []
    for i in order:
        manual = _split_camel(real[i]) if spec.ds == "ucf" else real[i]
        out.append((real[i], manual, manual))
    if len({m for _, m, _ in out}) != n:
        raise DataError(f"two {spec.name} class names share the manual name")
    return out


def _case_variant(name: str) -> str:
    """The same name with its second capital letter lower-cased ("HandStand" -> "Handstand")."""
    caps = [i for i, ch in enumerate(name) if ch.isupper()]
    i = caps[1]
    return name[:i] + name[i].lower() + name[i + 1:]


def class_plan(like: str, scale: float = 1.0, names: str = "pseudo") -> dict:
    """Names, split membership and per-class video counts (no features). Independent of the seed.

    `names`: "pseudo" (v1: generated pseudo-words) or "real" (v2: the real benchmark's names, assigned
    to the splits by our own draw, not the real split lists; the counts are the same either way).

    Returns dict(names=[(original, manual, clip)], listed=[spelling in all_class.txt and the CSVs],
    all_order=[class idx in all_class.txt order], s1/u1/u2/extra=[class idx], cls_u2=[class idx],
    counts={class idx: {stage: n videos}}) where counts holds each class's own stages (stage_2_train
    is derived: S1 train+val_seen, U1 val_unseen). `original` is the spelling of the split files,
    feature files and video names; `listed` equals it except for one UCF class (see _case_variant).
    With real names, `listed` is the real spelling and `original` the case variant (real UCF lists
    HandstandPushups in all_class.txt but HandStandPushups in the split files).
    """
    spec = like_spec(like)
    if names not in ("pseudo", "real"):
        raise DataError(f"names must be 'pseudo' or 'real', got {names!r}")
    s1, u1, u2 = _decode(spec.s1), _decode(spec.u1), _decode(spec.u2)
    n_used = len(s1) + len(u1) + len(u2)
    real = names == "real"
    names = (_real_names if real else _class_names)(spec, n_used + spec.n_extra)
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
    if spec.ds == "ucf" and not real:  # the real UCF lists one class as HandstandPushups in all_class.txt
        listed[g_s1[0]] = _case_variant(names[g_s1[0]][0])  # and HandStandPushups in the split files
    elif spec.ds == "ucf":  # real names: all_class.txt keeps the real spelling, the split files vary it
        c = next(c for c in g_s1 if sum(ch.isupper() for ch in names[c][0]) >= 2)
        names[c] = (_case_variant(names[c][0]),) + names[c][1:]
    all_order = rng.permutation(len(names)).tolist()  # all_class.txt is deliberately unsorted
    return dict(spec=spec, names=names, listed=listed, all_order=all_order, s1=g_s1, u1=g_u1, u2=g_u2, extra=extra,
                cls_u2=cls_u2, counts=counts)


def _split_classes(plan: dict, split: str) -> dict[str, list[int]]:
    s1, u1 = plan["s1"], plan["u1"]
    u2 = plan["u2"] if split == "main_split" else plan["cls_u2"]
    return {"stage_1_train": s1, "stage_1_val_seen": s1, "stage_1_val_unseen": u1,
            "stage_2_train": s1 + u1, "stage_2_test_seen": s1 + u1, "stage_2_test_unseen": u2}
