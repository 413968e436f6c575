"""How far MFT's l_kl is from a second cross-entropy, per KL target, on the synthetic sets.

Both terms are differentiated with respect to the same logits z = θo·θwᵀ of a training batch: at τ = 1,
∇z CE = p - onehot(y) and ∇z KL = p - q, so the two differ by onehot(y) - q. For each target we report
the relative gap ||∇KL - ∇CE|| / ||∇CE|| and the cosine of the two gradients with respect to the model's
parameters, at initialisation and after one short epoch of MFT training (the default preset otherwise).
Also reported: the text's mean off-diagonal cosine and the mass the semantic target puts on the true class.

    python benchmarks/kl_vs_ce.py [--likes ucf,activitynet] [--scale 0.25] [--batches 20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from avgzsl import losses  # noqa: E402
from avgzsl.config import load_config, resolve_config  # noqa: E402
from avgzsl.data import load_benchmark  # noqa: E402
from avgzsl.data.sampler import ClassBalancedSampler  # noqa: E402
from avgzsl.models import build_model  # noqa: E402
from avgzsl.train import SplitTensors, train_one_epoch  # noqa: E402


def _flat_grad(model, loss) -> torch.Tensor:
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], retain_graph=True,
                                allow_unused=True)
    return torch.cat([g.reshape(-1) for g in grads if g is not None])


def measure(model, cfg, data, batches, class_text, local) -> dict:
    """Per target: mean over batches of the logits-gradient gap and the parameter-gradient cosine."""
    mc = cfg.model_cfg
    model.train()
    out = {kind: {"logit_gap": [], "param_cos": [], "true_class_grad_share": []} for kind in losses.KL_TARGETS}
    for idx in batches:
        batch = data.take(idx)
        target = local[data.labels[idx]]  # (B,)
        theta_o = model.embed_videos(batch)  # (B, E)
        theta_w_all = model.embed_classes(class_text)  # (K, E)
        logits = theta_o @ theta_w_all.t()  # (B, K)
        p = F.softmax(logits.detach(), dim=1)  # (B, K)
        g_ce_z = p - F.one_hot(target, logits.shape[1]).float()  # (B, K)
        g_ce = _flat_grad(model, losses.embedding_cross_entropy(theta_o, theta_w_all, target))
        for kind in losses.KL_TARGETS:
            q = losses.kl_target(kind, class_text, target, mc.kl_eps, mc.kl_tau_q)  # (B, K)
            exclude = target if kind == "nontarget" else None
            kl = losses.kl_divergence(theta_o, theta_w_all, q, 1.0, exclude=exclude)
            z = logits.detach().requires_grad_(True)
            g_kl_z, = torch.autograd.grad(losses.kl_divergence(z, torch.eye(z.shape[1]), q, 1.0, exclude=exclude), z)
            g_kl_z = g_kl_z * z.shape[0]  # the batch mean's 1/B, to compare with the per-row g_ce_z
            g_kl = _flat_grad(model, kl)
            rec = out[kind]
            rec["logit_gap"].append(float((g_kl_z - g_ce_z).norm() / g_ce_z.norm()))
            rec["param_cos"].append(float(F.cosine_similarity(g_kl, g_ce, dim=0)))
            rec["true_class_grad_share"].append(float(g_kl_z.gather(1, target[:, None]).abs().sum() / g_kl_z.abs().sum()))
    return {k: {m: round(float(np.mean(v)), 5) for m, v in r.items()} for k, r in out.items()}


def text_stats(class_text: torch.Tensor, tau_q: float) -> dict:
    t = F.normalize(class_text.float(), dim=1)
    sim = t @ t.t()  # (K, K)
    off = sim[~torch.eye(len(t), dtype=torch.bool)]
    sem = losses.semantic_target(class_text, torch.arange(len(t)), tau_q)
    return {"mean_offdiag_cos": round(float(off.mean()), 4), "max_offdiag_cos": round(float(off.max()), 4),
            "semantic_mass_on_true_class": round(float(sem.diagonal().mean()), 4)}


def run(like: str, scale: float, n_batches: int) -> dict:
    torch.manual_seed(0)
    root = _common.synthetic(like, scale)
    cfg = load_config(resolve_config(f"mft_{like}"), ["n_batches=50"])
    bench = load_benchmark(root, split=cfg.split, text_alignment=cfg.text_alignment)
    split = bench.splits["stage_1_train"]
    data = SplitTensors.from_split(split)
    classes = split.classes
    text = torch.from_numpy(np.ascontiguousarray(bench.text, dtype=np.float32))
    class_text = text[torch.as_tensor(classes)]  # (K, Dt)
    local = torch.full((len(bench.class_names),), -1, dtype=torch.long)
    local[torch.as_tensor(classes)] = torch.arange(len(classes))
    model = build_model(cfg.model, cfg.model_cfg, bench.dims)
    probe = ClassBalancedSampler(split.labels, n_batches, cfg.bs, 123).epoch()
    result = {"like": like, "scale": scale, "classes": len(classes), "text": text_stats(class_text, cfg.model_cfg.kl_tau_q),
              "settings": {"kl_eps": cfg.model_cfg.kl_eps, "kl_tau_q": cfg.model_cfg.kl_tau_q, "kl_tau": 1.0},
              "at_init": measure(model, cfg, data, probe, class_text, local)}
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train_one_epoch(model, opt, data, ClassBalancedSampler(split.labels, cfg.n_batches, cfg.bs, 0).epoch(), class_text, local)
    result["after_one_epoch"] = measure(model, cfg, data, probe, class_text, local)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--likes", default="ucf,activitynet")
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = [run(like, a.scale, a.batches) for like in a.likes.split(",")]
    for r in rows:
        print(f"{r['like']}: text mean off-diagonal cos {r['text']['mean_offdiag_cos']}, semantic target's mass on "
              f"the true class {r['text']['semantic_mass_on_true_class']}")
        for when in ("at_init", "after_one_epoch"):
            for kind, m in r[when].items():
                print(f"  {when:16s} {kind:9s} |dKL - dCE| / |dCE| = {m['logit_gap']:.4f}   cos(params) = "
                      f"{m['param_cos']:.4f}   true-class share of dKL = {m['true_class_grad_share']:.3f}")
    print(f"wrote {_common.write('kl_vs_ce', {'results': rows}, a.out)}")


if __name__ == "__main__":
    main()
