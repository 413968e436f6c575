"""The v2 latent model of the synthetic benchmarks (`make_synthetic(..., generator="v2")`, the default).

v1 (`generator="linear"`, data/synthetic.py) draws features and text as linear maps of one class latent,
so a linear map from features to text is exactly the right model there. v2 keeps the layout and the
class plan (with the real benchmark's class names) and draws the features so that they behave more like
real AV-GZSL features. Every constant is a field of `SynthKnobs`; docs/synthetic.md lists them.

Global parameters (rng = default_rng([seed, 0])), d = d_latent:

* Semantic latent (what text describes). Topics P (n_topics x d) ~ N(0, I); class c has Dirichlet
  mixture weights w_c (topic_alpha) and s_c = a * unit(w_c P) * sqrt(d) + b * e_c, b = class_specific,
  a = sqrt(1 - b^2), e_c ~ N(0, I): unseen classes mix the topics of seen ones (transfer is possible).
* Nuisance latent u_c ~ N(0, I_d), which no text describes. Class centre l_c = (s_c + nu * u_c) /
  sqrt(1 + nu^2), nu = nuisance: the larger nu, the less of the centre text predicts.
* Text. Each encoder (CLIP 512, CLAP 1024, word2vec 300) is its own random linear map of
  (s_c + text_noise * eta_c), eta_c ~ N(0, I) per class and encoder, L2-normalised: text sees s_c only.
* Domain shift. Classes that are not stage-1 seen (U1, U2, unused) get, per modality, an extra centre
  offset unseen_shift * (v_m + delta_mc) / sqrt(2) (v_m shared, delta_mc per class, both N(0, I)) that
  text does not describe: the seen/unseen gap grows with it.
* Modes. Class c has `modes` offsets o_ck ~ mode_spread * N(0, I), centred over k (rescaled to keep
  their scale) so that they average to the class centre (modes = 1: none); shared by audio and video; a
  video picks one uniformly. In a low-dimensional latent such a class is not linearly separable from the others.
* Reliability. theta_c = pi/4 * (1 + tanh(reliability_spread * n_c + reliability_bias)), n_c ~ N(0, 1)
  (bias > 0: the dataset leans to video, < 0: to audio, 0: neither); the class-dependent
  part of the latent is scaled by r_ac = sqrt(2) cos(theta_c) in audio and r_vc = sqrt(2) sin(theta_c) in
  video (r_a^2 + r_v^2 = 2): theta near 0 = audio-dominant, near pi/2 = video-dominant, pi/4 = both
  modalities carry half. Noise scale sigma_c = intra * exp(noise_spread * n'_c), n'_c ~ N(0, 1).
* Modality maps. A fixed random 2-layer MLP per modality, f_m(h) = W2 phi(W1 h + b1) / k_m with
  phi(a) = tanh(g a) / g (g = nonlinearity; g -> 0 is linear), W1 (d x hidden) ~ N(0, 1/d),
  b1 ~ N(0, 1/4), W2 (hidden x D_m) ~ N(0, 1/hidden), k_m: the rms of W2 phi(W1 l + b1) over the class
  centres (unit scale per coordinate).

A video of class c (rng = default_rng([seed, 1, c]); the draws below in this order, each for every
video): mode k, missing flag (u < missing_frac), which modality is missing (coin), then per modality
(audio, video): eps ~ N(0, I_d) and n ~ N(0, I_D), and
    h_m = r_mc * (l_c + shift_mc + o_ck) + sigma_c * eps      (h_m = h0_m + 0.3 * eps when missing:
    x_m = unit(f_m(h_m) + cone_m + obs_noise * n)              a class-independent "silent"/"static" latent)
with cone_m = cone * N(0, I_D) the shared offset every embedding of a modality sits in. With coupled_noise
> 0, h_audio += coupled_noise * z and h_video -= coupled_noise * z (not on a missing modality), z ~ N(0, I_d)
per video from its own stream default_rng([seed, 3, c]): noise that a fused model can partly cancel.
With misleading_audio > 0, that fraction of the videos (flags, another class c' != c uniform over all
classes, and a mode from the stream default_rng([seed, 4, c])) takes the audio centre of c' instead of
c's (not on a missing audio): a confident but wrong audio, as background music or a voice-over.
With noise_per_video > 0, each video's noise eps is scaled per modality by exp(noise_per_video * q),
q ~ N(0, 1) per video and modality from the stream default_rng([seed, 5, c]): some videos have a poor
audio, others a poor video, which a per-video modality weighting can tell apart and a fixed sum cannot.

Temporal (`temporal=True`): the averaged vector x_m is drawn exactly as above (same stream); then, per
modality, T ~ U{t_min..t_max} and steps x_m + (step_noise / sqrt(D)) * (z_t - mean_t z_t), z_t ~ N(0, I):
the steps average to the averaged variant's vector (up to float16 storage rounding).

Class descriptions (for methods defined on name + description text, e.g. KDA): per class, text encoder
and description j = 1..DESCRIPTIONS (3, as KDA's files), a vector unit((s_c + DESCRIPTION_KNOWLEDGE * u_c
+ text_noise * eta_cj) @ M_part) with the encoder's own map M_part: a description also tells part of
the nuisance u_c, which the name does not (what a language model's knowledge adds; 0.5 is our choice).
The class text written as `class_text_descriptions.npy/.json` (a class-embeddings file beside the
text dicts, encoders/class_embeddings.py) is, per part, the renormalised mean of the name's vector and
the descriptions', as classtext.describe_classes averages real ones. Their draws come from their own
stream (default_rng([seed, 2])): every other array is the same with or without them.

Streams: knobs that set an array size (d_latent, n_topics, hidden, modes, t_min, t_max) and topic_alpha
(Dirichlet draws use rejection sampling) change all later draws; every other knob only changes values,
e.g. missing_frac 0 and 0.3 give the same videos except the flagged modality.

Not modelled: temporal structure within a video (steps are exchangeable), class hierarchies beyond
the topic mixtures, label noise in the features, per-video text, anything fitted to real features.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

DESCRIPTIONS = 3  # synthetic descriptions per class (KDA's class-split CSVs hold three)
DESCRIPTION_KNOWLEDGE = 0.5  # how much of the nuisance latent a description tells (ours)

__all__ = ["SynthKnobs", "LIKE_KNOBS", "default_knobs", "resolve_knobs", "knobs_tag", "latent_params",
           "class_videos", "write_class_text_descriptions", "complete"]


@dataclass(frozen=True)
class SynthKnobs:
    """The v2 model's constants (module docstring; docs/synthetic.md). The defaults are the knob set
    calibrated on the UCF-like benchmark (issue 16: set "c6" of docs/synthetic.md, "Calibration"); a
    like-dataset's own defaults are these with LIKE_KNOBS[like] over them (`default_knobs`)."""

    d_latent: int = 10  # d: dims of the semantic, nuisance and per-video latents
    n_topics: int = 12  # shared topic prototypes of the semantic latent
    topic_alpha: float = 0.3  # Dirichlet concentration of each class's topic mixture (small = 1-3 topics)
    class_specific: float = 0.6  # b: weight of the class-specific part of the semantic latent
    nuisance: float = 0.2  # nu: weight of the text-unpredictable latent in the AV class centre
    text_noise: float = 0.1  # s_t: class-level label noise of each text encoder
    unseen_shift: float = 0.15  # extra text-undescribed centre offset of the classes unseen in stage 1
    hidden: int = 32  # hidden width of each modality's random 2-layer MLP
    nonlinearity: float = 2.0  # g: tanh gain of the MLPs (0 = linear maps)
    reliability_spread: float = 1.0  # spread of the per-class audio-vs-video dominance (0: equal)
    reliability_bias: float = 0.0  # the dataset's lean: > 0 most classes video-dominant, < 0 audio-dominant
    coupled_noise: float = 0.0  # per-video latent noise added to audio and subtracted from video (fusion cancels it)
    missing_frac: float = 0.1  # fraction of videos with one modality (coin flip) uninformative
    misleading_audio: float = 0.0  # fraction of videos whose audio is another class's (background music, voice-over)
    noise_per_video: float = 0.0  # log-std of a per-video, per-modality noise multiplier (one modality can be poor)
    modes: int = 3  # modes (sub-clusters) per class; a video picks one
    mode_spread: float = 0.8  # mode offsets' scale per latent coordinate (class centres: ~1)
    intra: float = 0.35  # median within-class latent noise scale per coordinate
    noise_spread: float = 0.3  # log-std of the per-class noise scale over classes
    obs_noise: float = 0.5  # per-coordinate observation noise in feature space (signal: ~1)
    cone: float = 1.0  # per-coordinate scale of the shared offset of a modality's embeddings
    step_noise: float = 0.5  # temporal: per-step deviation, relative to a coordinate of a unit vector
    t_min: int = 5  # temporal: fewest steps per video and modality
    t_max: int = 10  # temporal: most steps per video and modality


_SIGNED = {"reliability_bias"}  # the float knobs that may be negative
_INTS = {"d_latent": 1, "n_topics": 1, "hidden": 1, "modes": 1, "t_min": 1, "t_max": 1}  # name -> minimum


# Our choice (issue 16; docs/synthetic.md, "Calibration"): one knob set does not land the four calibration
# methods near their published numbers on all three benchmarks (VGGSound's are far lower), so each
# like-dataset overrides some SynthKnobs defaults. Keys: like_spec(...).ds. Switch: pass knobs explicitly.
LIKE_KNOBS: dict[str, dict] = {
    "ucf": {},
    "activitynet": {},
    "vggsound": {"nuisance": 0.5, "unseen_shift": 0.5, "intra": 0.42, "mode_spread": 0.9},  # set g4
}


def default_knobs(like: str | None = None) -> SynthKnobs:
    """SynthKnobs' defaults with the like-dataset's overrides (LIKE_KNOBS) over them; like=None: none."""
    if like is None:
        return SynthKnobs()
    if like not in LIKE_KNOBS:
        raise DataError(f"no synthetic knob defaults for {like!r}; known: {', '.join(LIKE_KNOBS)}")
    return dataclasses.replace(SynthKnobs(), **LIKE_KNOBS[like])


def resolve_knobs(knobs: SynthKnobs | dict | None, like: str | None = None) -> SynthKnobs:
    """A SynthKnobs from None (the like-dataset's defaults, `default_knobs(like)`), a SynthKnobs (taken
    whole), or a dict of overrides of those defaults (values may be numeric strings, as from a command
    line: {"hidden": "64"}); DataError naming unknown keys or bad values."""
    base = default_knobs(like)
    if knobs is None:
        return base
    if isinstance(knobs, SynthKnobs):
        over = dataclasses.asdict(knobs)
    elif isinstance(knobs, dict):
        fields = [f.name for f in dataclasses.fields(SynthKnobs)]
        unknown = sorted(map(str, set(knobs) - set(fields)))
        if unknown:
            raise DataError(f"unknown synthetic knob(s) {', '.join(unknown)}; known: {', '.join(fields)}")
        over = dict(knobs)
    else:
        raise DataError(f"knobs must be a SynthKnobs or a dict, got {type(knobs).__name__}")
    clean = {}
    for f in dataclasses.fields(SynthKnobs):
        v = over.get(f.name, getattr(base, f.name))
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = float("nan")
        if f.name in _INTS:
            if isinstance(v, bool) or not x.is_integer() or x < _INTS[f.name]:
                raise DataError(f"synthetic knob {f.name} must be an integer >= {_INTS[f.name]}, got {v!r}")
            clean[f.name] = int(x)
        else:
            signed = f.name in _SIGNED
            if isinstance(v, bool) or not (np.isfinite(x) and (signed or x >= 0)):
                raise DataError(f"synthetic knob {f.name} must be a finite number{'' if signed else ' >= 0'}, "
                                f"got {v!r}")
            clean[f.name] = x
    bad = [n for n in ("class_specific", "missing_frac", "misleading_audio") if clean[n] > 1]
    if bad:
        raise DataError(f"synthetic knob(s) {', '.join(bad)} must lie in [0, 1]")
    if clean["topic_alpha"] <= 0:
        raise DataError("synthetic knob topic_alpha must be > 0")
    if clean["t_min"] > clean["t_max"]:
        raise DataError(f"synthetic knob t_min ({clean['t_min']}) exceeds t_max ({clean['t_max']})")
    return SynthKnobs(**clean)


def knobs_tag(knobs: SynthKnobs, like: str | None = None) -> str:
    """'' for the like-dataset's default knobs, else '-k' + 8 hex digits of a hash of the knobs that
    differ from them."""
    default = dataclasses.asdict(default_knobs(like))
    changed = {k: v for k, v in dataclasses.asdict(knobs).items() if v != default[k]}
    if not changed:
        return ""
    return "-k" + hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _phi(a: np.ndarray, g: float) -> np.ndarray:
    """tanh(g a) / g, in place on `a`; the identity for g = 0."""
    if g > 0:
        a *= g
        np.tanh(a, out=a)
        a /= g
    return a


def latent_params(seed: int, plan: dict, fs: dict, knobs: SynthKnobs) -> dict:
    """Global parameters: text embeddings, per-class modality centres, modes, noise scales and maps."""
    k = knobs
    rng = np.random.default_rng([seed, 0])
    n, d = len(plan["names"]), k.d_latent
    topics = rng.standard_normal((k.n_topics, d))
    mix = rng.dirichlet(np.full(k.n_topics, k.topic_alpha), size=n)
    shared = _unit(mix @ topics) * np.sqrt(d)
    s = np.sqrt(1 - k.class_specific**2) * shared + k.class_specific * rng.standard_normal((n, d))
    u = rng.standard_normal((n, d))
    centre = (s + k.nuisance * u) / np.sqrt(1 + k.nuisance**2)
    text, descriptions = {}, {}
    drng = np.random.default_rng([seed, 2])  # descriptions' own stream: nothing else moves
    for part, dim in fs["text"].items():  # each encoder: its own map and label noise, of s_c only
        m = rng.standard_normal((d, dim)) / np.sqrt(d)
        text[part] = _unit((s + k.text_noise * rng.standard_normal(s.shape)) @ m).astype(np.float32)
        told = s + DESCRIPTION_KNOWLEDGE * u  # (C, d): a description also tells part of the nuisance
        descs = [_unit((told + k.text_noise * drng.standard_normal(s.shape)) @ m) for _ in range(DESCRIPTIONS)]
        descriptions[part] = _unit(text[part] + sum(descs)).astype(np.float32)  # mean direction of name + descs
    unseen = np.ones(n, bool)
    unseen[plan["s1"]] = False  # the stage-1 seen classes keep their centres
    theta = np.pi / 4 * (1 + np.tanh(k.reliability_spread * rng.standard_normal(n) + k.reliability_bias))
    rel = {"audio": np.sqrt(2) * np.cos(theta), "video": np.sqrt(2) * np.sin(theta)}
    sigma = k.intra * np.exp(k.noise_spread * rng.standard_normal(n))
    modes = k.mode_spread * rng.standard_normal((n, k.modes, d))
    modes -= modes.mean(1, keepdims=True)  # the modes average to the class centre (modes = 1: no offset)
    modes *= np.sqrt(k.modes / max(k.modes - 1, 1))  # centring shrank them; back to mode_spread
    mods = {}
    for mod in ("audio", "video"):
        dim = fs[mod]
        shift = k.unseen_shift * (rng.standard_normal(d) + rng.standard_normal((n, d))) / np.sqrt(2)
        base = centre + shift * unseen[:, None]  # (C, d) before modes and reliability
        w1 = rng.standard_normal((d, k.hidden)) / np.sqrt(d)
        b1 = rng.standard_normal(k.hidden) / 2
        w2 = rng.standard_normal((k.hidden, dim)) / np.sqrt(k.hidden)
        scale = np.sqrt(np.mean((_phi(base @ w1 + b1, k.nonlinearity) @ w2) ** 2))
        mods[mod] = dict(
            centre=(rel[mod][:, None, None] * (base[:, None, :] + modes)).astype(np.float32),  # (C, modes, d)
            silent=rng.standard_normal(d).astype(np.float32),  # class-independent latent of a missing modality
            w1=w1.astype(np.float32), b1=b1.astype(np.float32), w2=(w2 / scale).astype(np.float32),
            cone=(k.cone * rng.standard_normal(dim)).astype(np.float32),
        )
    return dict(mix=mix, text=text, descriptions=descriptions, mods=mods, sigma=sigma.astype(np.float32),
                rel=rel, unseen=unseen, knobs=k)


def complete(root, generator: str) -> bool:
    """Whether a written folder holds every file of today's generator: v2 folders written before the
    descriptions class text existed lack it (synthetic_root then writes them anew)."""
    return generator != "v2" or any(root.glob("features/*/text/class_text_descriptions.npy"))


def write_class_text_descriptions(text_dir, names: list[str], vectors: dict, space: str) -> None:
    """The descriptions' class text as a class-embeddings file (the format of
    encoders/class_embeddings.py, written here without importing it: data does not import encoders;
    tests/test_kda.py reads it back with ClassEmbeddings.load). names: all_class.txt order, vectors:
    part -> (C, dim) in that order, CLIP first as the joint text."""
    joint = np.concatenate([vectors[p] for p in ("clip", "clap", "w2v") if p in vectors], axis=1)
    np.save(text_dir / "class_text_descriptions.npy", np.ascontiguousarray(joint, np.float32), allow_pickle=False)
    meta = {"format": "avgzsl-class-embeddings", "format_version": 1, "encoder": "synthetic", "space": space,
            "dim": int(joint.shape[1]), "names": list(names),
            "info": {"descriptions": "synthetic", "descriptions_per_class": {"min": DESCRIPTIONS, "max": DESCRIPTIONS},
                     "description_knowledge": DESCRIPTION_KNOWLEDGE}}
    (text_dir / "class_text_descriptions.json").write_text(json.dumps(meta, indent=1) + "\n")


def class_videos(params: dict, c: int, n: int, seed: int, temporal: bool, dtype) -> dict:
    """All n videos of class c (every stage at once): {"audio"/"video": list of arrays}."""
    k: SynthKnobs = params["knobs"]
    rng = np.random.default_rng([seed, 1, c])
    mode = rng.integers(0, k.modes, size=n)
    missing = rng.random(n) < k.missing_frac
    audio_missing = rng.random(n) < 0.5
    # its own stream, so that coupled_noise 0 and > 0 give the same videos otherwise
    coupled = np.random.default_rng([seed, 3, c]).standard_normal((n, k.d_latent), dtype=np.float32)
    mrng = np.random.default_rng([seed, 4, c])  # misleading audio's own stream, likewise
    n_classes = params["mods"]["audio"]["centre"].shape[0]
    misled = mrng.random(n) < k.misleading_audio
    other = (c + 1 + mrng.integers(0, max(n_classes - 1, 1), size=n)) % n_classes  # another class than c
    other_mode = mrng.integers(0, k.modes, size=n)
    quality = np.exp(np.float32(k.noise_per_video)
                     * np.random.default_rng([seed, 5, c]).standard_normal((2, n), dtype=np.float32))  # likewise
    avg = {}
    for mod in ("audio", "video"):
        p = params["mods"][mod]
        dim = p["w2"].shape[1]
        h = rng.standard_normal((n, k.d_latent), dtype=np.float32)
        gone = missing & (audio_missing if mod == "audio" else ~audio_missing)
        h *= np.where(gone, np.float32(0.3), params["sigma"][c] * quality[int(mod == "video")])[:, None]
        centre = p["centre"][c, mode]  # (n, d)
        if mod == "audio" and k.misleading_audio:
            centre = np.where(misled[:, None], p["centre"][other, other_mode], centre)
        h += np.where(gone[:, None], p["silent"], centre)
        if k.coupled_noise:
            h += np.where(gone[:, None], np.float32(0), np.float32(k.coupled_noise if mod == "audio" else -k.coupled_noise)
                          * coupled)
        # einsum, not `@`: OpenBLAS worker threads spin after each small call and, on a busy 2-core
        # machine, starve the rest of the loop (measured 5-10x slower); einsum's own loop is serial.
        a = np.einsum("nk,kd->nd", h, p["w1"])
        a += p["b1"]
        pre = np.einsum("nk,kd->nd", _phi(a, k.nonlinearity), p["w2"])
        pre += p["cone"]
        pre += np.float32(k.obs_noise) * rng.standard_normal((n, dim), dtype=np.float32)
        avg[mod] = _unit(pre)
    out = {}
    for mod in ("audio", "video"):
        if not temporal:
            out[mod] = list(avg[mod].astype(dtype))
            continue
        x = avg[mod]
        steps = rng.integers(k.t_min, k.t_max + 1, size=n)
        dev = rng.standard_normal((int(steps.sum()), x.shape[1]), dtype=np.float32)
        ends = np.cumsum(steps)
        starts = ends - steps
        dev -= np.repeat(np.add.reduceat(dev, starts, axis=0) / steps[:, None], steps, axis=0)  # zero mean per video
        dev *= np.float32(k.step_noise / np.sqrt(x.shape[1]))
        dev += np.repeat(x, steps, axis=0)
        out[mod] = np.split(dev.astype(dtype), ends[:-1])
    return out
