"""Calibrated-stacking evaluation (whole β grid, S/U/HM/ZSL, AUSUC) for N videos x C classes.

    python benchmarks/evaluate.py [--sizes 10000x51,50000x309,200000x309]

Times the library path a protocol run takes (`train.nearest_classes`: chunked L2 distances reduced to
each video's nearest seen and unseen class, then `metrics.gzsl_metrics` over the 76-value grid) on 64-d
embeddings, in a fresh process per size (peak memory), and checks it against the straightforward
(N, C) argmin computation on the first size.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


class Embedded(torch.nn.Module):
    """A stand-in model whose embeddings are its inputs: isolates the evaluation's own cost."""

    def embed_videos(self, batch):
        return batch.audio

    def embed_classes(self, text):
        return text

    def distances(self, batch, class_emb):
        return torch.cdist(batch.audio, class_emb)


def single(n: int, c: int, check: bool) -> dict:
    from avgzsl.metrics import gzsl_metrics
    from avgzsl.models.base import Batch
    from avgzsl.train import SplitTensors, nearest_classes
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(n, 64, generator=g)
    text = torch.randn(c, 64, generator=g)
    class_ids = np.arange(c)
    seen = np.arange(c) < int(c * 0.67)
    labels = torch.randint(0, c, (n,), generator=g)
    data = SplitTensors(Batch(emb, emb[:, :1]), labels)
    betas = np.linspace(0, 5, 76)
    model = Embedded()
    base = _common.peak_rss_mib()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        nearest, _, _ = nearest_classes(model, data, text, class_ids, seen, eval_bs=8192)
        res = gzsl_metrics(nearest, labels.numpy(), class_ids, seen, betas)
        best = min(best, time.perf_counter() - t)
    out = {"n_videos": n, "n_classes": c, "n_betas": len(betas), "seconds": round(best, 4),
           "peak_rss_mib": round(_common.peak_rss_mib(), 1), "rss_before_mib": round(base, 1),
           "hm": round(float(res.hm[res.best]), 6)}
    if check:  # the straightforward computation, as the reference does it
        d = torch.cdist(emb, text).numpy()
        ok = True
        for i, beta in enumerate(betas[::5]):
            pred = np.argmin(d + np.where(seen, np.float32(beta), 0)[None, :], axis=1)
            acc = np.array([np.mean(pred[labels.numpy() == k] == k) for k in range(c)])
            s, u = acc[seen].mean(), acc[~seen].mean()
            ok &= bool(np.isclose(s, res.seen[5 * i]) and np.isclose(u, res.unseen[5 * i]))
        out["matches_straightforward"] = ok
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000x51,50000x309,200000x309")
    ap.add_argument("--single", nargs=2, type=int)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.single:
        print(json.dumps(single(*a.single, a.check)))
        return
    rows = []
    for i, size in enumerate(a.sizes.split(",")):
        n, c = map(int, size.split("x"))
        r = _common.in_subprocess(__file__, "--single", str(n), str(c), *(["--check"] if i == 0 else []))
        rows.append(r)
        print(f"{n:7d} videos x {c:3d} classes: {r['seconds']:.3f}s  peak {r['peak_rss_mib']:.0f} MiB"
              + (f"  matches straightforward: {r['matches_straightforward']}" if "matches_straightforward" in r else ""),
              flush=True)
    print(f"wrote {_common.write('evaluate', {'runs': rows}, a.out)}")


if __name__ == "__main__":
    main()
