"""Our side of the comparison: the common per-run JSON from an avgzsl run folder (optionally training it first).

    # convert a finished run folder
    python benchmarks/reference/run_ours.py --run RUN_DIR --out results/NAME.json
    # train first (Python API, so it works while the CLI is being refactored), then convert
    python benchmarks/reference/run_ours.py --data ROOT --run RUN_DIR --out results/NAME.json \
        [--config clipclap_ucf] [--set seed=42 --set fused_adam=false ...] [--threads 1] [--emulate LIST]

The JSON has the fields `run_reference.py` writes: stage-1 epochs (lr, loss terms, val S/U/HM/ZSL/beta), best
epoch, stage-2 epochs (lr, loss terms, and the validation numbers when stage2_lr=reference), test.

--emulate (the harness's experiments that found what `reference_mode` now does in avgzsl itself;
`--set reference_mode=true` gives the same run as `--emulate exact` with the three switches, to float32
metric arithmetic, measured in README.md): a comma list of reference behaviours patched into
our training in memory (see README.md, FINDINGS), to measure what each one does:
  double_bn  - after every optimiser step, a second train-mode forward of O_enc/O_proj on the batch and of
               W_enc/W_proj on the batch's class texts (the reference's get_embeddings call in its train loop),
               which updates those BatchNorm statistics a second time and draws dropout masks
  bn_order   - the reference's order of module calls inside one loss: the batch texts pass W_enc/W_proj
               before the training-class texts of the CE term (ours: CE texts first); changes the order of
               BatchNorm updates and dropout draws only
  global_rng - the sampler draws from the global torch RNG (interleaved with dropout) instead of its own
               generator (the reference's WeightedRandomSampler draws from the global RNG)
  exact      - everything the reference does to the global torch RNG, in its order, plus bn_order and
               double_bn: per epoch the train DataLoader's base-seed draw, its 8 prefetched batches
               (4 workers x prefetch 2), one batch drawn ahead before every step, each batch a
               torch.multinomial(64, replacement) over per-video weights (1/n_classes)/class_size with the
               videos ordered by class in the reference's class-id order (case-sensitive sort of all_class.txt)
               and by file order within a class; after training, the validation pass's draws (base seed,
               9 batches, the evaluation loader's base seed, 291 batches); training-class texts in the
               reference's class order. Use with fused_adam=false, stage2_lr=reference (and
               text_alignment=reference_order); the bench is needed, so it is set up in train_run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path



def reference_loss(model, batch, class_text, target):
    """ClipClap's loss with the reference's order of module calls: the library's
    `ClipClap.reference_loss` (reference mode, behaviour call_order), which began here. (total, terms)."""
    return model.reference_loss(batch, class_text, target)


def reference_second_forward(model, batch, class_text, target) -> None:
    """The reference's second train-mode forward after every step: `ClipClap.reference_second_forward`
    (reference mode, behaviour double_bn)."""
    model.reference_second_forward(batch, class_text, target)


def convert(run: Path) -> dict:
    rows = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines() if ln.strip()]
    res = json.loads((run / "results.json").read_text())
    keys = ("seen", "unseen", "hm", "zsl", "beta")
    out = {"stage1": [], "stage2": []}
    for r in rows:
        row = {"epoch": r["epoch"], "lr": r["lr"], "loss": {k: r["loss"][k] for k in ("total", "ce", "reg", "rec")
                                                              if k in r["loss"]}}
        v = r.get("val") or r.get("val_trained_on")
        if v:
            row["val"] = {k: v[k] for k in keys}
        out[f"stage{r['stage']}"].append(row)
    out["best_epoch"] = res["best_epoch"]
    out["stage2_epochs"] = res["stage2_epochs"]
    out["test_val"] = {k: res["val"][k] for k in keys}
    out["test"] = {k: res["test"][k] for k in keys}
    try:
        t = json.loads((run / "timings.json").read_text())
        out["wall_s"] = {k.replace("_s", ""): round(v, 1) for k, v in t.items() if isinstance(v, (int, float))}
    except (OSError, ValueError):
        pass
    return out


# ------------------------------------------------------------------------------ emulation (harness only)

def _emulate(names: set[str]) -> None:
    """Monkeypatch avgzsl in memory with the reference behaviours in `names` (see the module docstring)."""
    import torch

    from avgzsl import train
    from avgzsl.data import sampler as sampler_mod
    from avgzsl.models import clipclap

    unknown = names - {"double_bn", "bn_order", "global_rng", "exact"}
    if unknown:
        raise SystemExit(f"--emulate: unknown {sorted(unknown)}")

    if "bn_order" in names:
        def loss(self, batch, class_text, target):
            total, terms = reference_loss(self, batch, class_text, target)
            return total, {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()}

        clipclap.ClipClap.loss = loss

    if "double_bn" in names:
        orig_epoch = train.train_one_epoch

        def train_one_epoch(model, optimizer, data, batches, class_text, local_index, progress=False, desc="train"):
            orig_step = optimizer.step

            def step(*a, **kw):
                out = orig_step(*a, **kw)
                reference_second_forward(model, step.batch, class_text, step.target)
                return out

            orig_take = data.take

            def take(idx):
                b = orig_take(idx)
                step.batch, step.target = b, local_index[data.labels[idx]]
                return b

            optimizer.step, data.take = step, take
            try:
                return orig_epoch(model, optimizer, data, batches, class_text, local_index, progress, desc)
            finally:
                optimizer.step, data.take = orig_step, orig_take

        train.train_one_epoch = train_one_epoch
        import avgzsl.protocol as protocol
        protocol.train_one_epoch = train_one_epoch

    if "global_rng" in names:
        def epoch(self):
            n = self.n_batches * self.bs
            cls = torch.randint(len(self.classes), (n,))
            offset = (torch.rand(n, dtype=torch.float64) * self.counts[cls]).long()
            offset = torch.minimum(offset, self.counts[cls] - 1)
            return self.order[self.starts[cls] + offset].view(self.n_batches, self.bs)

        sampler_mod.ClassBalancedSampler.epoch = epoch


def _emulate_exact(bench) -> None:
    """The `exact` emulation (module docstring): the reference's global-RNG stream and call order."""
    from collections import deque

    import numpy as np
    import torch

    import avgzsl.protocol as protocol
    from avgzsl import train
    from avgzsl.train import check_finite

    names = bench.class_names
    ref_rank = np.empty(len(names), np.int64)  # our class id -> the reference's (case-sensitive sort)
    ref_rank[sorted(range(len(names)), key=lambda i: names[i])] = np.arange(len(names))
    val_labels = np.concatenate([bench.splits["stage_1_val_seen"].labels, bench.splits["stage_1_val_unseen"].labels])

    def ref_sampler(labels: np.ndarray):
        """(video order, per-video weights) as the reference's WeightedRandomBatchSampler holds them."""
        classes = sorted(np.unique(labels), key=lambda c: ref_rank[c])
        rows = [np.flatnonzero(labels == c) for c in classes]
        sizes = np.asarray([len(r) for r in rows])
        w = np.repeat(1 / len(classes), len(classes)) / sizes
        weights = torch.as_tensor(np.repeat(w, sizes), dtype=torch.double)
        return torch.from_numpy(np.concatenate(rows)), weights

    val_order, val_w = ref_sampler(val_labels)
    orig_stage = protocol._train_stage

    def train_stage(number, cfg, build, train_split, classes, *rest):
        classes = np.asarray(sorted(classes, key=lambda c: ref_rank[c]))  # CE text rows in reference order
        return orig_stage(number, cfg, build, train_split, classes, *rest)

    protocol._train_stage = train_stage

    def seed_draw():
        torch.empty((), dtype=torch.int64).random_()

    def train_one_epoch(model, optimizer, data, batches, class_text, local_index, progress=False, desc="train",
                        **_):
        n_batches, bs = batches.shape
        order, weights = ref_sampler(data.labels.cpu().numpy())
        model.train()
        seed_draw()  # the train loader's base seed
        queue, drawn = deque(), 0

        def draw():
            nonlocal drawn
            if drawn < n_batches:
                queue.append(order[torch.multinomial(weights, bs, True)])
                drawn += 1

        for _ in range(min(8, n_batches)):
            draw()
        sums, steps = {}, []
        for _ in range(n_batches):
            idx = queue.popleft()
            draw()  # the loader puts the next index batch before handing this one out
            b = data.take(idx)
            target = local_index[data.labels[idx]]
            loss, terms = reference_loss(model, b, class_text, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            reference_second_forward(model, b, class_text, target)
            terms = {**{k: v.detach() for k, v in terms.items()}, "total": loss.detach()}
            for k, v in terms.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            steps.append(torch.stack([terms[k] for k in ("ce", "reg", "rec", "total")]))
        check_finite(model, torch.stack(steps), ["ce", "reg", "rec", "total"], desc)
        # the validation pass after the epoch draws only from the RNG (eval mode, no dropout)
        seed_draw()
        for _ in range(9):
            torch.multinomial(val_w, bs, True)
        seed_draw()  # the evaluation loader's base seed
        for _ in range(n_batches - 9):
            torch.multinomial(val_w, bs, True)
        return {k: float(v) / n_batches for k, v in sums.items()}

    train.train_one_epoch = train_one_epoch
    protocol.train_one_epoch = train_one_epoch
    del val_order


def train_run(data: Path, run: Path, config: str, sets: list[str], threads: int, emulate: set[str]) -> float:
    import torch
    torch.set_num_threads(threads)
    if emulate - {"exact"}:
        _emulate(emulate - {"exact"})
    from avgzsl.config import load_config, resolve_config
    from avgzsl.data import load_benchmark
    from avgzsl.protocol import run_protocol
    cfg = load_config(resolve_config(config), sets)
    bench = load_benchmark(data, cache=False, split=cfg.split, feature_dir=cfg.feature_dir,
                           text_alignment=cfg.text_alignment)
    if "exact" in emulate:
        _emulate_exact(bench)
    t0 = time.perf_counter()
    run_protocol(cfg, bench, run)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="our run folder (made when --data is given)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, help="train first on this dataset root")
    ap.add_argument("--config", default="clipclap_ucf")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--emulate", default="", help="comma list: double_bn, bn_order, global_rng")
    ap.add_argument("--label", default="")
    a = ap.parse_args(argv)
    emulate = {x for x in a.emulate.split(",") if x}
    wall = None
    if a.data:
        os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
        wall = train_run(a.data, a.run, a.config, a.set, a.threads, emulate)
    cfg_text = (a.run / "config.yaml").read_text() if (a.run / "config.yaml").exists() else ""
    payload = {"impl": "ours", "label": a.label or a.out.stem, "sets": a.set, "emulate": sorted(emulate),
               "threads": a.threads, "data": {"root": a.data.name if a.data else None},
               "config_yaml": cfg_text, **convert(a.run)}
    if wall is not None:
        payload["wall_total_s"] = round(wall, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(payload, indent=1) + "\n")
    t = payload["test"]
    print(f"{a.out}: best epoch {payload['best_epoch']}, stage-2 epochs {payload['stage2_epochs']}, test "
          f"S {100 * t['seen']:.2f} U {100 * t['unseen']:.2f} HM {100 * t['hm']:.2f} ZSL {100 * t['zsl']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
