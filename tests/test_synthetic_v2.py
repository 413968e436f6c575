"""The v2 synthetic benchmark (data/synthetic_v2.py): each modelled property, measured on a small generated set.

Every test generates UCF-like data (scale <= 0.25) and measures its property with a plain probe; the numbers
quoted in the comments are what the defaults gave when the test was written (one core, numpy 2.4, torch 2.13).
"""
from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from avgzsl.data.benchmark import load_benchmark
from avgzsl.data.synthetic import make_synthetic, synthetic_root
from avgzsl.data.synthetic_v2 import SynthKnobs
from avgzsl.errors import DataError

SCALE = 0.25
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """data(generator, seed, **make_synthetic options) -> a loaded Benchmark, each set written once."""
    base, made = tmp_path_factory.mktemp("v2"), {}

    def get(generator="v2", seed=0, **kw):
        key = (generator, seed, json.dumps(kw, sort_keys=True))
        if key not in made:
            root = make_synthetic("ucf", base / f"set{len(made)}", scale=kw.pop("scale", SCALE), seed=seed,
                                  generator=generator, **kw)
            made[key] = load_benchmark(root, split="main_split", cache=False)
        return made[key]
    return get


def xy(bench, stages, classes=None, which="both"):
    """Features (float32) and labels of the videos of `stages`, restricted to `classes` when given."""
    xs, ys = [], []
    for stage in stages:
        s = bench.splits[stage]
        keep = np.ones(len(s), bool) if classes is None else np.isin(s.labels, classes)
        a, v = s.audio[keep].astype(np.float32), s.video[keep].astype(np.float32)
        xs.append({"both": np.hstack([a, v]), "audio": a, "video": v}[which])
        ys.append(s.labels[keep])
    return np.vstack(xs), np.concatenate(ys)


def per_class_acc(pred, y) -> np.ndarray:
    return np.array([np.mean(pred[y == c] == c) for c in np.unique(y)])


def nearest(protos, classes, x):
    d = (x**2).sum(1)[:, None] - 2 * x @ protos.T + (protos**2).sum(1)[None]
    return classes[d.argmin(1)]


def class_means(x, y, classes):
    return np.stack([x[y == c].mean(0) for c in classes])


def seen_sets(bench, which="both"):
    """(train x, train y, eval x, eval y, seen classes): stage_1_train vs the seen classes' other videos."""
    seen = bench.splits["stage_1_train"].classes
    xtr, ytr = xy(bench, ["stage_1_train"], which=which)
    xte, yte = xy(bench, ["stage_1_val_seen", "stage_2_test_seen"], seen, which)
    return xtr, ytr, xte, yte, seen


def probe(xtr, ytr, xte, yte, hidden: int) -> float:
    """Mean per-class accuracy of a softmax classifier on concatenated features: multinomial logistic
    regression (hidden=0) or a 1-hidden-layer ReLU MLP, both on the same 128 principal components, same
    optimiser (full-batch Adam, 300 steps, weight decay 1e-3)."""
    classes = np.unique(ytr)
    return float(per_class_acc(classes[probe_logits(xtr, ytr, xte, hidden).argmax(1)], yte).mean())


def probe_logits(xtr, ytr, xte, hidden: int = 256) -> np.ndarray:
    """The classifier of `probe`, trained on (xtr, ytr): log-probabilities of xte over np.unique(ytr)."""
    torch.manual_seed(0)
    mu = xtr.mean(0)
    _, _, vt = np.linalg.svd(xtr - mu, full_matrices=False)
    ztr, zte = (xtr - mu) @ vt[:128].T, (xte - mu) @ vt[:128].T
    sd = ztr.std(0).mean()
    ztr, zte = (torch.tensor(z / sd, dtype=torch.float32) for z in (ztr, zte))
    classes = np.unique(ytr)
    target = torch.tensor(np.searchsorted(classes, ytr))
    d, k = ztr.shape[1], len(classes)
    net = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, k)) if hidden \
        else torch.nn.Linear(d, k)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(ztr), target).backward()
        opt.step()
    with torch.no_grad():
        return torch.log_softmax(net(zte), 1).numpy()


def text_map(bench):
    """Ridge map from class text to class mean features, fit on the stage-1 seen classes (train videos)."""
    xtr, ytr, _, _, seen = seen_sets(bench)
    m0 = xtr.mean(0)
    t = bench.text[seen]
    w = t.T @ np.linalg.solve(t @ t.T + 0.1 * np.eye(len(t)), class_means(xtr, ytr, seen) - m0)
    return lambda classes: bench.text[classes] @ w + m0


# ------------------------------------------------------------------------------------ properties

@pytest.fixture(scope="module")
def probes(data):
    """{generator: [(linear probe, MLP probe) per seed]} on seeds 0 and 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small problems: one thread is faster than contended ones
    try:
        return {g: [(probe(*x, hidden=0), probe(*x, hidden=256)) for x in (seen_sets(data(g, s))[:4] for s in (0, 1))]
                for g in ("v2", "linear")}
    finally:
        torch.set_num_threads(threads)


def test_a_linear_probe_is_clearly_below_an_mlp_probe(probes):
    # measured (linear, MLP) per seed at the calibrated defaults: v2 (0.906, 0.923) (0.920, 0.943): the MLP
    # removes 17.5% and 29.5% of the linear probe's errors; linear/v1 (0.958, 0.960) (0.981, 0.981): 4.5%
    # and 0%. Before calibration (mode_spread 1.2, intra 0.5) the gap was 7.6 points; the calibrated
    # data are easier for both probes, so the property is measured as the share of errors removed. The
    # gap comes from the modes per class in a low-dimensional latent (not linearly separable); `modes` 1
    # removes it, a wider `hidden` narrows it (docs/synthetic.md, v2 findings).
    removed = {g: np.mean([(mlp - lin) / (1 - lin) for lin, mlp in r]) for g, r in probes.items()}
    assert removed["v2"] >= 0.12
    assert removed["linear"] < removed["v2"] - 0.1
    # and v2 is the harder data set
    assert max(lin for lin, _ in probes["v2"]) < min(lin for lin, _ in probes["linear"])


def dominance(bench, margin=0.3) -> tuple[int, int]:
    """(# seen classes whose audio-only accuracy beats their video-only accuracy by `margin`, # the other way
    round); accuracy of nearest class mean, 4-fold cross-validated over all videos of the seen classes."""
    seen = bench.splits["stage_1_train"].classes
    acc = {}
    for mod in ("audio", "video"):
        x, y = xy(bench, ["stage_1_train", "stage_1_val_seen", "stage_2_test_seen"], seen, mod)
        fold, pred = np.arange(len(y)) % 4, np.empty_like(y)
        for f in range(4):
            pred[fold == f] = nearest(class_means(x[fold != f], y[fold != f], seen), seen, x[fold == f])
        acc[mod] = per_class_acc(pred, y)
    diff = acc["audio"] - acc["video"]
    return int((diff >= margin).sum()), int((diff <= -margin).sum())


def test_audio_only_and_video_only_accuracy_differ_by_class(data):
    # measured (audio-dominant, video-dominant) of 30 seen classes: v2 (3, 9), seed 1 (9, 6);
    # reliability_spread = 0: (1, 3), (5, 1); v1: (0, 0), (1, 0)
    audio_dom, video_dom = dominance(data("v2"))
    assert audio_dom >= 3 and video_dom >= 3
    assert sum(dominance(data("v2", knobs=dict(reliability_spread=0.0)))) < (audio_dom + video_dom) / 2
    assert sum(dominance(data("linear"))) < (audio_dom + video_dom) / 2


def test_reliability_bias_leans_the_dataset_to_one_modality(data):
    video_lean, audio_lean = dominance(data("v2", knobs=dict(reliability_bias=1.5))), \
        dominance(data("v2", knobs=dict(reliability_bias=-1.5)))
    assert video_lean[1] >= 3 * max(video_lean[0], 1)  # (audio-dominant, video-dominant) of 30 seen classes
    assert audio_lean[0] >= 3 * max(audio_lean[1], 1)


def zero_shot(bench) -> tuple[float, float]:
    """(seen accuracy of nearest class mean fit on stage_1_train, among the seen classes, on their other
    videos; zero-shot accuracy on stage_1_val_unseen among the val-unseen classes with text-predicted means)."""
    xtr, ytr, xte, yte, seen = seen_sets(bench)
    seen_acc = per_class_acc(nearest(class_means(xtr, ytr, seen), seen, xte), yte).mean()
    unseen = bench.splits["stage_1_val_unseen"].classes
    xu, yu = xy(bench, ["stage_1_val_unseen"])
    zsl = per_class_acc(nearest(text_map(bench)(unseen), unseen, xu), yu).mean()
    return float(seen_acc), float(zsl)


def test_seen_accuracy_exceeds_zero_shot_accuracy_by_a_wide_margin(data):
    # measured: v2 seen 0.76, zero-shot 0.42 (chance 1/12; seed 1: 0.74/0.63); v1 seen 0.95, zero-shot 0.55
    seen, zsl = zero_shot(data("v2"))
    assert zsl > 1.5 / 12  # transfer works...
    assert seen - zsl >= 0.15  # ...but far from seen accuracy
    seen1, zsl1 = zero_shot(data("linear"))
    assert seen < seen1 and zsl < zsl1  # harder than v1


def mean_cos(a, b) -> np.ndarray:
    """Cosine between the rows of a and every row of b."""
    a, b = (m / np.linalg.norm(m, axis=1, keepdims=True) for m in (a, b))
    return a @ b.T


def text_fit(bench) -> dict[str, float]:
    """Cosine between text-predicted and measured class means (centred): seen classes (held-out videos),
    unseen classes (stage_1_val_unseen), and mismatched unseen pairs (chance)."""
    pred = text_map(bench)
    xtr, _, xte, yte, seen = seen_sets(bench)
    m0 = xtr.mean(0)
    unseen = bench.splits["stage_1_val_unseen"].classes
    xu, yu = xy(bench, ["stage_1_val_unseen"])
    cs = mean_cos(pred(seen) - m0, class_means(xte, yte, seen) - m0)
    cu = mean_cos(pred(unseen) - m0, class_means(xu, yu, unseen) - m0)
    off = ~np.eye(len(unseen), dtype=bool)
    return dict(seen=float(np.diag(cs).mean()), unseen=float(np.diag(cu).mean()), chance=float(cu[off].mean()))


def test_text_predicts_unseen_class_means_only_partly(data):
    # measured: cos(predicted, measured mean) seen 0.69, unseen 0.50, mismatched unseen pairs -0.04
    # (seed 1: 0.73/0.64/-0.01); unseen with nuisance = unseen_shift = 0: 0.53 (0.67), with both 0.5:
    # 0.37 (0.48)
    fit = text_fit(data("v2"))
    assert fit["unseen"] > fit["chance"] + 0.2
    assert fit["unseen"] < fit["seen"] - 0.15
    # the knobs behind it: the more text-unpredictable centre, the worse text predicts unseen classes
    clean, noisy = (text_fit(data("v2", knobs=dict(nuisance=x, unseen_shift=x)))["unseen"] for x in (0.0, 0.5))
    assert clean > fit["unseen"] > noisy and clean > noisy + 0.1


def test_a_knob_fraction_of_videos_has_an_uninformative_modality(data):
    # the same stream with missing_frac 0 and 0.3 differs exactly in the flagged videos' one modality;
    # measured: 30.2% of 1708 videos flagged; nearest class mean (fit on unflagged train audio) on 142
    # flagged audio vectors 0.028 (chance 1/30), on unflagged held-out audio 0.51
    full, gone = data("v2", 0, knobs=dict(missing_frac=0.0)), data("v2", 0, knobs=dict(missing_frac=0.3))
    flags, hits = [], {True: [], False: []}
    for stage in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen", "stage_2_test_seen",
                  "stage_2_test_unseen"):  # every video once (stage_2_train repeats stage 1)
        a, b = full.splits[stage], gone.splits[stage]
        assert a.video_names == b.video_names and np.array_equal(a.labels, b.labels)
        da, dv = (np.any(x != y, axis=1) for x, y in ((a.audio, b.audio), (a.video, b.video)))
        assert not np.any(da & dv)  # one modality at most
        flags.append(da | dv)
    flags = np.concatenate(flags)
    assert abs(flags.mean() - 0.3) < 0.06
    tr, seen = gone.splits["stage_1_train"], gone.splits["stage_1_train"].classes
    ta = full.splits["stage_1_train"]
    ok_tr = ~np.any(tr.audio != ta.audio, axis=1)  # train audio that is informative
    means = class_means(tr.audio[ok_tr].astype(np.float32), tr.labels[ok_tr], seen)
    for stage in ("stage_1_train", "stage_1_val_seen", "stage_2_test_seen"):
        a, b = full.splits[stage], gone.splits[stage]
        keep = np.isin(b.labels, seen)
        flagged = np.any(a.audio != b.audio, axis=1)
        pred = nearest(means, seen, b.audio.astype(np.float32))
        for f in (True, False) if stage != "stage_1_train" else (True,):  # the means saw unflagged train audio
            m = keep & (flagged == f)
            hits[f] += list(pred[m] == b.labels[m])
    assert np.mean(hits[True]) < 2 / len(seen)  # class-independent: about chance
    assert np.mean(hits[False]) > np.mean(hits[True]) + 0.2


def read(root: Path, rel: str):
    with open(root / rel, "rb") as f:
        return pickle.load(f)


def test_temporal_steps_average_to_the_averaged_variant(tmp_path):
    avg = make_synthetic("ucf", tmp_path / "a", scale=0.05, seed=5)
    tem = make_synthetic("ucf", tmp_path / "t", scale=0.05, seed=5, temporal=True)
    lengths, spread = set(), []
    for p in sorted((avg / "features/clipclap").rglob("*.pkl")):
        rel = p.relative_to(avg / "features/clipclap").as_posix()
        x, steps = read(avg, f"features/clipclap/{rel}"), read(tem, f"features/clipclap_non_averaged/{rel}")
        assert x["video_names"] == steps["video_names"]
        for v, s in zip(x["features"], steps["features"]):
            s = s.astype(np.float32)
            lengths.add(len(s))
            assert np.allclose(s.mean(0), v.astype(np.float32), atol=5e-4)  # float16 rounding only
            spread.append(np.abs(s - s.mean(0)).max())
    assert len(lengths) > 1 and min(spread) > 0.01  # steps vary in number and around their average


def test_determinism_and_recorded_knobs(tmp_path):
    a = make_synthetic("ucf", tmp_path / "a", scale=0.02, seed=2, knobs={"hidden": 16})
    seen, unseen = ((a / f"class-split/main_split/{s}.txt").read_text().split("\n")[0]
                    for s in ("stage_1_train", "stage_2_test_unseen"))
    files = ["synthetic.json", "class-split/all_class.txt", "features/clipclap/text/word_embeddings_ucf_normed.npy",
             f"features/clipclap/audio/stage_1_train/{seen}.pkl",
             f"features/clipclap/video/stage_2_test_unseen/{unseen}.pkl"]
    b = make_synthetic("ucf", tmp_path / "b", scale=0.02, seed=2, knobs=SynthKnobs(hidden=16))
    c = make_synthetic("ucf", tmp_path / "c", scale=0.02, seed=3, knobs={"hidden": 16})
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / files[2]).read_bytes() != (c / files[2]).read_bytes()
    manifest = json.loads((a / "synthetic.json").read_text())
    assert manifest["generator"] == "v2"
    assert manifest["knobs"] == dataclasses.asdict(SynthKnobs(hidden=16))
    assert set(manifest["knobs"]) == {f.name for f in dataclasses.fields(SynthKnobs)}
    with pytest.raises(DataError, match="hidden_width"):
        make_synthetic("ucf", tmp_path / "d", scale=0.02, knobs={"hidden_width": 3})
    with pytest.raises(DataError, match="linear"):
        make_synthetic("ucf", tmp_path / "d", scale=0.02, generator="linear", knobs={"hidden": 3})
    with pytest.raises(DataError, match="generator"):
        make_synthetic("ucf", tmp_path / "d", scale=0.02, generator="v3")
    assert not (tmp_path / "d").exists()


def test_synthetic_root_keeps_generators_and_knobs_apart(tmp_path):
    roots = {name: synthetic_root("ucf", 0.01, 0, cache=tmp_path, **kw) for name, kw in
             [("v2", {}), ("linear", dict(generator="linear")), ("k", dict(knobs={"modes": 2})),
              ("default", dict(knobs=SynthKnobs()))]}
    assert roots["v2"].name == "ucf-scale0.01-seed0" == roots["default"].name
    assert roots["linear"].name == "ucf-scale0.01-seed0-linear"
    assert roots["k"].name.startswith("ucf-scale0.01-seed0-k") and len(roots["k"].name) == len(roots["v2"].name) + 10
    gens = {n: json.loads((r / "synthetic.json").read_text())["generator"] for n, r in roots.items()}
    assert gens == {"v2": "v2", "linear": "linear", "k": "v2", "default": "v2"}
    # a folder written before v2 (v1 data under the default name) is written anew
    m = roots["v2"] / "synthetic.json"
    m.write_text(json.dumps({**json.loads(m.read_text()), "generator": "avgzsl.data.synthetic", "knobs": None}))
    synthetic_root("ucf", 0.01, 0, cache=tmp_path)
    assert json.loads(m.read_text())["generator"] == "v2"


def test_v2_tables_hold_the_shipped_real_names_with_the_release_quirks(tmp_path):
    from avgzsl.data.synthetic_plan import real_class_names

    root = make_synthetic("ucf", tmp_path / "u", scale=0.01)
    cs = root / "class-split"
    listed = [s for s in (cs / "all_class.txt").read_text().split("\n") if s]
    assert sorted(listed) == sorted(real_class_names("ucf")) and listed != sorted(listed)
    split = {n for p in (cs / "main_split").iterdir() for n in p.read_text().split()}
    assert len(split) == 51 and len(split - set(listed)) == 1  # one class spelled with another case
    (odd,) = split - set(listed)
    assert odd.lower() in {n.lower() for n in listed}
    rows = (cs / "ucf_clip_class_names.csv").read_text().splitlines()[1:]
    for row in rows:  # UCF: manual = the CamelCase name split into words; clip name = manual
        original, manual, clip = row.split(",")
        assert manual.replace(" ", "") == original and clip == manual
        assert (" " in manual) == (sum(map(str.isupper, original)) > 1)
    text = np.load(root / "features/clipclap/text/word_embeddings_ucf_normed.npy", allow_pickle=True).item()
    assert sorted(text) == sorted(r.split(",")[2] for r in rows)
    assert len(real_class_names("activitynet")) == 200 and len(real_class_names("vggsound")) == 309


@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/benchmarks (the real class-split lists)")
def test_real_class_names(tmp_path):
    root = make_synthetic("ucf", tmp_path / "u", scale=0.01)
    ours = [s for s in (root / "class-split/all_class.txt").read_text().split("\n") if s]
    real = [s for s in (REAL / "UCF/class-split/all_class.txt").read_text().split("\n") if s]
    assert len(ours) == 101 and sorted(n.lower() for n in ours) == sorted(n.lower() for n in real)
    # our own split draw, not the real one
    real_train = set((REAL / "UCF/class-split/main_split/stage_1_train.txt").read_text().split())
    assert set((root / "class-split/main_split/stage_1_train.txt").read_text().split()) != real_train
    shipped = json.loads((Path(__file__).resolve().parents[1] / "src/avgzsl/data/class_names.json").read_text())
    for key, folder in (("ucf", "UCF"), ("activitynet", "ActivityNet"), ("vggsound", "VGGSound")):
        assert shipped[key] == [s for s in (REAL / folder / "class-split/all_class.txt").read_text().split("\n") if s]


def test_each_like_dataset_has_its_own_knob_defaults(tmp_path):
    from avgzsl.data.synthetic_v2 import LIKE_KNOBS, default_knobs, resolve_knobs

    base = dataclasses.asdict(SynthKnobs())
    for like, over in LIKE_KNOBS.items():
        mine = dataclasses.asdict(default_knobs(like))
        assert {k for k in base if mine[k] != base[k]} == {k for k, v in over.items() if v != base[k]}
    vgg = default_knobs("vggsound")
    assert vgg != SynthKnobs() and vgg.nuisance == LIKE_KNOBS["vggsound"]["nuisance"]
    # a dict overrides the like-dataset's defaults; a SynthKnobs is taken whole
    assert resolve_knobs({"hidden": 16}, "vggsound") == dataclasses.replace(vgg, hidden=16)
    assert resolve_knobs(SynthKnobs(hidden=16), "vggsound") == SynthKnobs(hidden=16)
    with pytest.raises(DataError, match="no synthetic knob defaults"):
        default_knobs("kinetics")
    # written data and folder names follow them
    made = make_synthetic("vggsound", tmp_path / "v", scale=0.01, knobs={"hidden": 16})
    assert json.loads((made / "synthetic.json").read_text())["knobs"] == dataclasses.asdict(
        dataclasses.replace(vgg, hidden=16))
    root = synthetic_root("vggsound", 0.01, 0, cache=tmp_path)
    assert root.name == "vggsound-scale0.01-seed0"
    assert json.loads((root / "synthetic.json").read_text())["knobs"] == dataclasses.asdict(vgg)
    assert synthetic_root("vggsound", 0.01, 0, cache=tmp_path, knobs=SynthKnobs()).name.startswith(
        "vggsound-scale0.01-seed0-k")


def class_latents(monkeypatch, knob: str, values, missing_frac: float, n_classes: int = 2, centre_scale: float = 1.0,
                  sigma: float = 1.0, c: int = 1, n: int = 40):
    """The latent h of each modality before the maps ([audio h, video h] per value of `knob`), for class c's
    n videos (seed 5) with identity first layers; also the knobs and the modality parameters used."""
    from avgzsl.data import synthetic_v2 as v2

    calls = []
    real = v2._phi
    monkeypatch.setattr(v2, "_phi", lambda a, g: calls.append(a.copy()) or real(a, g))  # sees W1 h + b1 = h
    base = v2.resolve_knobs({"missing_frac": missing_frac}, "ucf")
    d, rng = base.d_latent, np.random.default_rng(0)
    mods = {m: dict(w1=np.eye(d, dtype=np.float32), b1=np.zeros(d, np.float32),
                    w2=rng.standard_normal((d, 6)).astype(np.float32),
                    centre=(centre_scale * rng.standard_normal((n_classes, base.modes, d))).astype(np.float32),
                    silent=rng.standard_normal(d).astype(np.float32), cone=np.zeros(6, np.float32))
            for m in ("audio", "video")}
    hs = []
    for value in values:
        calls.clear()
        params = dict(knobs=dataclasses.replace(base, **{knob: value}), mods=mods,
                      sigma=np.full(n_classes, sigma, np.float32))
        v2.class_videos(params, c, n, seed=5, temporal=False, dtype=np.float32)
        hs.append(list(calls))
    return hs, base, mods


def test_coupled_noise_moves_audio_and_video_latents_in_opposite_directions(monkeypatch):
    """The latent h of each modality, before the maps: audio + c z, video - c z, z from its own stream (so
    every other draw is the one of coupled_noise 0), a missing modality untouched."""
    hs, base, _ = class_latents(monkeypatch, "coupled_noise", (0.0, 0.7), missing_frac=0.5)
    z = np.random.default_rng([5, 3, 1]).standard_normal((40, base.d_latent), dtype=np.float32)
    draw = np.random.default_rng([5, 1, 1])  # class_videos' own first draws: mode, missing, which one
    draw.integers(0, base.modes, size=40)
    missing, audio_missing = draw.random(40) < 0.5, draw.random(40) < 0.5
    for i, (gone, sign) in enumerate(((missing & audio_missing, 1), (missing & ~audio_missing, -1))):
        diff = hs[1][i] - hs[0][i]
        assert np.allclose(diff[~gone], sign * 0.7 * z[~gone], atol=1e-5)
        assert gone.any() and not diff[gone].any()


def test_misleading_audio_takes_another_classes_audio_centre(monkeypatch):
    """The audio latent of a flagged video is centred on another class's audio centre (mode and class
    from its own stream, so misleading_audio 0 and > 0 give the same videos otherwise); video untouched."""
    n_classes = 5
    hs, base, mods = class_latents(monkeypatch, "misleading_audio", (0.0, 0.4), missing_frac=0.0, n_classes=n_classes,
                                   centre_scale=10.0, sigma=1e-3, c=2, n=200)
    mrng = np.random.default_rng([5, 4, 2])
    misled = mrng.random(200) < 0.4
    other = (2 + 1 + mrng.integers(0, n_classes - 1, size=200)) % n_classes
    other_mode = mrng.integers(0, base.modes, size=200)
    assert 40 < misled.sum() < 120 and (other != 2).all()
    audio_centres = mods["audio"]["centre"]
    assert np.allclose(hs[1][0][misled], audio_centres[other[misled], other_mode[misled]], atol=0.05)
    assert np.array_equal(hs[1][0][~misled], hs[0][0][~misled])  # unflagged audio: the same draws
    assert np.array_equal(hs[1][1], hs[0][1])  # video: untouched


def test_noise_per_video_scales_each_videos_noise_per_modality(monkeypatch):
    """h - centre (the noise) of each video and modality is the noise of noise_per_video 0 times
    exp(s * q), q from its own stream: the same draws otherwise, audio and video scaled apart."""
    hs, _, _ = class_latents(monkeypatch, "noise_per_video", (0.0, 0.8), missing_frac=0.0, centre_scale=0.0, n=50)
    q = np.random.default_rng([5, 5, 1]).standard_normal((2, 50), dtype=np.float32)
    for i in (0, 1):  # audio, video
        np.testing.assert_allclose(hs[1][i], hs[0][i] * np.exp(0.8 * q[i])[:, None], rtol=1e-5, atol=1e-6)
    ratio = np.linalg.norm(hs[1][0], axis=1) / np.linalg.norm(hs[1][1], axis=1)
    assert ratio.max() > 3 and ratio.min() < 1 / 3  # some videos' audio is far noisier than their video, and back


def late_and_joint(bench) -> tuple[float, float]:
    """Seen-class accuracy of a joint MLP probe on concat(audio, video), and of late fusion: the sum of
    the log-probabilities of an audio-only and a video-only MLP probe (a product of per-modality experts)."""
    out = {}
    for which in ("audio", "video", "both"):
        xtr, ytr, xte, yte, _ = seen_sets(bench, which)
        out[which] = (probe_logits(xtr, ytr, xte), yte, np.unique(ytr))
    classes, yte = out["both"][2], out["both"][1]
    acc = lambda lp: float(per_class_acc(classes[lp.argmax(1)], yte).mean())  # noqa: E731
    return acc(out["audio"][0] + out["video"][0]), acc(out["both"][0])


def test_coupled_noise_favours_a_joint_model_over_late_fusion(data):
    # measured (late, joint) at coupled_noise 0 / 1.0: (0.965, 0.923) / (0.582, 0.709)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        late0, joint0 = late_and_joint(data("v2"))
        late1, joint1 = late_and_joint(data("v2", knobs=dict(coupled_noise=1.0)))
    finally:
        torch.set_num_threads(threads)
    assert joint1 - late1 > (joint0 - late0) + 0.1
    assert joint1 > late1 + 0.05
