"""Lock-step check: the reference's ClipClap model and ours, same initial weights, same batches, N steps.

    python benchmarks/reference/lockstep.py --ref CLONE --data ROOT [--steps 300] [--seed 42] [--out JSON]

Needs an interpreter that imports both torch/avgzsl and the reference's model module (its imports: einops,
opt_einsum). Both models are built right after torch.manual_seed(seed) (their initial state_dicts are
compared tensor by tensor, in order). Every step feeds both the same batch (drawn once with our sampler), the
same per-video class texts and the same training-class text matrix; dropout is switched off (p = 0) so that
no RNG is involved and any difference is a difference of computation. The reference model is stepped with
its own `optimize_params` (per-tensor Adam inside it) followed by its train loop's `get_embeddings` call in
train mode; our model with each of the variants below. Reported per variant: the largest per-step loss
difference, and after the last step the largest difference of any weight, of any BatchNorm running statistic,
of the eval-mode embeddings of the validation videos and classes, and the validation S/U/HM at its best beta.

Variants of ours: `default` (fused Adam, one forward), `per_tensor_adam` (fused_adam=false),
`+double_bn` (per-tensor Adam and the reference's second train-mode forward of O_enc/W_enc/O_proj/W_proj),
`+double_bn+ref_order` (also the reference's order of module calls inside the loss).
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

import numpy as np
import torch


def build_reference(clone: Path, lr: float):
    sys.path.insert(0, str(clone))
    from src.clipclap_model import ClipClap_model  # noqa: E402  (the reference's module)
    from src.utils_improvements import get_model_params
    # the values of config/clipclap.yaml and the README's UCF command that the model reads
    vals = dict(lr=lr, reg_loss=True, dropout_encoder=0.3, dropout_decoder=0.1, additional_dropout=0.1,
                encoder_hidden_size=512, decoder_hidden_size=512, embeddings_batch_norm=True, rec_loss=True,
                cross_entropy_loss=True, lr_scheduler=True, optimizer="adam", modality="both",
                word_embeddings="both")
    names = list(inspect.signature(get_model_params).parameters)
    return ClipClap_model(get_model_params(*[vals.get(n) for n in names]), 128, 4096)


def no_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def ours_step(model, opt, x_batch, class_text, target, double_bn: bool, ref_order: bool):
    from run_ours import reference_loss, reference_second_forward  # same folder: the one copy of both
    model.train()
    if ref_order:
        loss, terms = reference_loss(model, x_batch, class_text, target)
    else:
        loss, terms = model.loss(x_batch, class_text, target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if double_bn:
        reference_second_forward(model, x_batch, class_text, target)
    return {k: float(v) for k, v in terms.items() if k in ("ce", "reg", "rec")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from avgzsl.config import load_config
    from avgzsl.data import load_benchmark
    from avgzsl.data.sampler import ClassBalancedSampler
    from avgzsl.metrics import gzsl_metrics, nearest_seen_unseen
    from avgzsl.models import build_model
    from avgzsl.protocol import EvalSet
    from avgzsl.train import SplitTensors

    cfg = load_config(None)
    bench = load_benchmark(a.data, cache=False)
    s = bench.splits
    train = SplitTensors.from_split(s["stage_1_train"])
    classes = s["stage_1_train"].classes
    text = torch.from_numpy(np.ascontiguousarray(bench.text, dtype=np.float32))
    class_text = text[torch.as_tensor(classes)]
    local = torch.full((len(bench.class_names),), -1, dtype=torch.long)
    local[torch.as_tensor(classes)] = torch.arange(len(classes))
    batches = ClassBalancedSampler(s["stage_1_train"].labels, a.steps, cfg.bs, a.seed).epoch()
    val = EvalSet.build(s["stage_1_val_seen"], s["stage_1_val_unseen"], "cpu")

    def embed_ref(m, batch, t):
        # eval mode: each row's embedding depends on that row only, so videos and classes go separately
        m.eval()
        with torch.no_grad():
            n, c = len(batch.audio), len(t)
            emb_v = m.get_embeddings(batch.audio, batch.video, torch.zeros(n, t.shape[1]), None, None)[0]
            emb_c = m.get_embeddings(torch.zeros(c, batch.audio.shape[1]), torch.zeros(c, batch.video.shape[1]),
                                     t, None, None)[2]
            return emb_v, emb_c

    def embed_ours(m, batch, t):
        m.eval()
        with torch.no_grad():
            return m.embed_videos(batch), m.embed_classes(t)

    val_text = text[torch.as_tensor(val.class_ids)]

    def val_hm(v_emb, c_emb):
        dist = torch.cdist(v_emb, c_emb).numpy()
        res = gzsl_metrics(nearest_seen_unseen(dist, val.seen_mask), val.data.labels.numpy(), val.class_ids,
                           val.seen_mask, cfg.betas())
        return {k: round(v, 6) for k, v in res.summary().items() if k in ("seen", "unseen", "hm", "beta")}

    torch.manual_seed(a.seed)
    ref0 = build_reference(a.ref, cfg.lr)
    torch.manual_seed(a.seed)
    ours0 = build_model(cfg.model, cfg.model_cfg, bench.dims)
    init_same = all(torch.equal(x, y) for x, y in zip(ref0.state_dict().values(), ours0.state_dict().values()))

    # the reference, stepped as its train loop does
    ref = ref0
    no_dropout(ref)
    ref_losses = []
    for idx in batches:
        b = train.take(idx)
        tgt = local[train.labels[idx]]
        ref.train()
        _, det = ref.optimize_params(b.audio, b.video, tgt.clone(), class_text[tgt], None, None,
                                     embedding_crossentropy=class_text, optimize=True)
        ref.get_embeddings(b.audio, b.video, class_text[tgt], None, None)
        ref_losses.append({"ce": float(det["Loss/cross_entropy"]), "reg": float(det["Loss/loss_reg"]),
                           "rec": float(det["Loss/loss_cmd_rec"])})
    ref_state = list(ref.state_dict().items())
    rv, rc = embed_ref(ref, val.data.batch, val_text)

    variants = {"default": dict(fused=True, double_bn=False, ref_order=False),
                "per_tensor_adam": dict(fused=False, double_bn=False, ref_order=False),
                "+double_bn": dict(fused=False, double_bn=True, ref_order=False),
                "+double_bn+ref_order": dict(fused=False, double_bn=True, ref_order=True)}
    report = {"steps": a.steps, "seed": a.seed, "initial_state_identical": init_same,
              "reference": {"val": val_hm(rv, rc)}, "variants": {}}
    for name, v in variants.items():
        torch.manual_seed(a.seed)
        m = build_model(cfg.model, cfg.model_cfg, bench.dims)
        no_dropout(m)
        opt = torch.optim.Adam(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=v["fused"])
        dl = 0.0
        for i, idx in enumerate(batches):
            terms = ours_step(m, opt, train.take(idx), class_text, local[train.labels[idx]], v["double_bn"],
                              v["ref_order"])
            dl = max(dl, max(abs(terms[k] - ref_losses[i][k]) for k in terms))
        st = list(m.state_dict().items())
        dw = max(float((x - y).abs().max()) for (kx, x), (_, y) in zip(st, ref_state)
                 if x.is_floating_point() and "running" not in kx)
        dbn = max(float((x - y).abs().max()) for (kx, x), (_, y) in zip(st, ref_state) if "running" in kx)
        ov, oc = embed_ours(m, val.data.batch, val_text)
        report["variants"][name] = {"max_step_loss_diff": dl, "max_weight_diff": dw, "max_bn_stat_diff": dbn,
                                    "max_val_video_emb_diff": float((ov - rv).abs().max()),
                                    "max_class_emb_diff": float((oc - rc).abs().max()), "val": val_hm(ov, oc)}
        print(name, json.dumps(report["variants"][name]))
    print("reference", json.dumps(report["reference"]), "initial identical:", init_same)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
