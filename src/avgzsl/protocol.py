"""The two-stage GZSL protocol of the field (ClipClap-GZSL / AVCA / TCAF), as one plain function.

Stage 1: train on stage_1_train; after every epoch evaluate on stage_1_val_seen ∪ stage_1_val_unseen
(candidates = the classes of those two lists, seen = val_seen's). Best epoch = first epoch with the
highest validation HM (at its best beta); keep that model (A) and its beta.
Stage 2: a fresh model (same seed) trained on the videos of the three stage-1 folders (classes:
stage_2_train) for best_epoch + 1 epochs (epochs are 0-based) -> model B.
Test: candidates = stage_2_test_seen ∪ stage_2_test_unseen; evaluate B at the beta chosen with A.

Learning rate: Adam(weight_decay) with ReduceLROnPlateau(mode=max) stepped on validation HM in stage 1.
`stage2_lr: replay` (our default) gives stage-2 epoch e the learning rate stage 1 used at epoch e;
`reference` steps the scheduler in stage 2 on the stage-1 validation set, as the reference does,
although those videos are now training data.

Crash safety: after every epoch the full training state (model, optimiser, scheduler, sampler, RNG,
stage, epoch, best-so-far) is written atomically to `state.pt`; `run_protocol(..., resume=True)`
continues from it and gives bit-identical results on CPU.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import load_model, read_checkpoint, save_checkpoint
from .config import RunConfig
from .data.sampler import ClassBalancedSampler
from .data.types import Benchmark, Split
from .errors import AvgzslError, ConfigError, DataError, LeakageError
from .leakage import check_leakage
from .metrics import GZSLResult, Nearest, curve_summary, gzsl_metrics
from .models import build_model, get_model_class
from .runfolder import RunFolder
from .runlock import run_lock
from .reference import ReferenceRun, best_epoch_update, reference_rank, test_beta
from .train import NonFiniteLoss, SplitTensors, evaluate, nearest_classes, train_one_epoch

log = logging.getLogger("avgzsl.protocol")


@dataclass
class EvalSet:
    """A labelled evaluation set with its candidate classes and which of them are seen."""

    data: SplitTensors
    class_ids: np.ndarray  # (C,) sorted
    seen_mask: np.ndarray  # (C,) bool

    @staticmethod
    def build(seen: Split, unseen: Split, device) -> "EvalSet":
        class_ids = np.union1d(seen.classes, unseen.classes)
        return EvalSet(SplitTensors.from_split(Split.concat([seen, unseen]), device), class_ids,
                       np.isin(class_ids, seen.classes))


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _local_index(n_classes: int, class_ids: np.ndarray, device) -> torch.Tensor:
    idx = torch.full((n_classes,), -1, dtype=torch.long)
    idx[torch.as_tensor(class_ids)] = torch.arange(len(class_ids))
    return idx.to(device)


def _lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _set_lr(optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


def _rng_state(device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def _set_rng_state(state: dict, device) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], torch.device(device))


def _diverged(e: NonFiniteLoss, lr: float, run, stage: int, epoch: int) -> AvgzslError:
    """The detector's line plus what is on disk: the state of the last good epoch, never the bad one."""
    msg = f"{e}, at lr={lr:g}; nothing of this epoch was saved"
    if run is not None and stage == 1 and epoch == 0:
        msg += "; no epoch had finished, so there is nothing to resume"
    elif run is not None:
        last = f"stage {stage} epoch {epoch}" if epoch else "the end of stage 1"
        msg += f"; the run stays resumable from {last} with --resume {run.path}"
    return AvgzslError(msg)


def _curve(res: GZSLResult) -> dict:
    return {"beta": res.betas.tolist(), "seen": res.seen.tolist(), "unseen": res.unseen.tolist(),
            "hm": res.hm.tolist()}


def modality_breakdown(model, test: EvalSet, text: torch.Tensor, labels: np.ndarray, nearest: Nearest,
                       eval_bs: int) -> dict | None:
    """{"both" | "audio" | "video": curve_summary} on the test set for a model with single-modality
    scorings (`eval_modes`); None for the others. A diagnostic for the report: β-free numbers only,
    nothing here feeds a selection."""
    modes = model.eval_modes()
    if not modes or test.seen_mask.all() or (~test.seen_mask).all():
        return None
    out = {"both": curve_summary(nearest, labels, test.class_ids, test.seen_mask)}
    for m in modes:
        near_m = nearest_classes(model, test.data, text, test.class_ids, test.seen_mask, eval_bs,
                                 distance_fn=lambda b, e, m=m: model.mode_distances(b, e)[m])[0]
        out[m] = curve_summary(near_m, labels, test.class_ids, test.seen_mask)
    return out


def _train_stage(number: int, cfg: RunConfig, build, train: Split, classes: np.ndarray, epochs: int, done: int,
                 resumed: dict | None, text: torch.Tensor, n_classes: int, device, run: RunFolder | None,
                 progress: bool, before_epoch, after_epoch, saved, on_row, ref: ReferenceRun | None = None,
                 pack=None):
    """One training stage, epochs `done`..`epochs`-1, resumable after every epoch; returns the model.

    The stages differ only in their hooks: `before_epoch(epoch, opt)` (stage 2 replays stage 1's lr),
    `after_epoch(epoch, model, sched, lr, row, bar)` (stage 1 validates, steps the scheduler and keeps
    the best epoch), and `saved(epoch)`, the stage's own part of `state.pt`. Everything a resume needs
    (model, optimiser, scheduler, sampler, RNG) is restored and saved here, in this order, so a resumed
    run draws the same random numbers as an uninterrupted one. `ref` (reference mode) swaps in the
    reference's batches, class order and step hooks (reference.py). `pack` (a pack.PackMember) builds
    under its pack's lock, keeps this run's RNG in its own generators and runs the steps in its pack.
    """
    model, opt, sched = pack.build(build) if pack is not None else build()
    sampler = ClassBalancedSampler(train.labels, cfg.n_batches, cfg.bs, cfg.seed)
    if resumed is not None:
        model.load_state_dict(resumed["model"]), opt.load_state_dict(resumed["optimizer"])
        sched.load_state_dict(resumed["scheduler"]), sampler.load_state_dict(resumed["sampler"])
        pack.rng.set_state(resumed["rng"]) if pack is not None else _set_rng_state(resumed["rng"], device)
    data = SplitTensors.from_split(train, device)
    loaders, (loss_fn, after_step) = None, (None, None)
    if ref is not None:
        classes = ref.class_order(classes)
        loaders, (loss_fn, after_step) = ref.loaders(train.labels), ref.step_hooks(model)
    cls_text, local = text[torch.as_tensor(classes, device=device)], _local_index(n_classes, classes, device)
    bar = tqdm(range(done, epochs), desc=f"stage {number}", disable=not progress, initial=done, total=epochs)
    for epoch in bar:
        before_epoch(epoch, opt)
        lr = _lr(opt)
        te = time.perf_counter()
        try:
            batches = loaders[0].epoch() if loaders else sampler.epoch()
            step_losses: dict = {}
            terms = train_one_epoch(model, opt, data, batches, cls_text, local, progress,
                                    desc=f"stage {number} epoch {epoch + 1}", loss_fn=loss_fn, after_step=after_step,
                                    step_losses=step_losses if run is not None else None,
                                    step_fn=pack.step if pack is not None else None)
            if loaders:
                loaders[1].validation_pass()
        except NonFiniteLoss as e:
            raise _diverged(e, lr, run, number, epoch) from None
        row = {"stage": number, "epoch": epoch, "lr": lr, "loss": terms, "train_s": round(time.perf_counter() - te, 3)}
        after_epoch(epoch, model, sched, lr, row, bar)
        row["time_s"] = round(time.perf_counter() - te, 3)
        if on_row is not None:
            on_row(row)
        if run is not None:
            n_steps = len(next(iter(step_losses.values()), []))
            run.log_steps({"stage": number, "epoch": epoch, "first_step": epoch * n_steps, "terms": step_losses})
            run.log_epoch(row)
            run.save_state({**saved(epoch), "model": model.state_dict(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "sampler": sampler.state_dict(),
                            "rng": pack.rng.state() if pack is not None else _rng_state(device)})
    return model


def run_protocol(cfg: RunConfig, bench: Benchmark, out_dir: str | Path | None = None,
                 device: str = "cpu", progress: bool = False, resume: bool = False, stages: int = 2,
                 on_epoch=None, pack=None) -> dict:
    """Stage 1 -> stage 2 -> test (see `_run_protocol`), holding out_dir's lock throughout: a second
    process on the same run folder fails at once, and a start that fails before its first saved epoch
    removes the folder it made (runlock.run_lock). `pack`: this run is a member of a packed group
    (pack.run_packed); nothing of its results depends on the other members."""
    args = (cfg, bench, out_dir, device, progress, resume, stages, on_epoch, pack)
    if out_dir is None:
        return _run_protocol(*args)
    with run_lock(out_dir, discard_on_error=True):
        return _run_protocol(*args)


def _run_protocol(cfg: RunConfig, bench: Benchmark, out_dir: str | Path | None = None,
                  device: str = "cpu", progress: bool = False, resume: bool = False, stages: int = 2,
                  on_epoch=None, pack=None) -> dict:
    """Stage 1 -> stage 2 -> test. Returns the results dict (also written to out_dir/results.json).

    stages=1 stops after stage 1 and returns {"val", "best_epoch", "epochs": [val summary per epoch]};
    stages=0 trains stage 1 without validating (nothing to select: a timing probe, reproduce --dry-run) and
    returns {"stage1_s"}
    without touching the test splits (what a hyper-parameter sweep may look at). on_epoch(row) is
    called with each stage-1 epoch's log row.
    """
    if stages not in (0, 1, 2):
        raise AvgzslError(f"stages={stages}: expected 0, 1 or 2")
    cfg.validate()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AvgzslError("--device cuda was asked for, but torch finds no CUDA device")
    if get_model_class(cfg.model).needs_descriptions and not bench.text_from_descriptions:
        raise ConfigError(f"{cfg.model} needs class descriptions: set descriptions: FILE.csv (one row per class: "
                          f"name, description, ...), or class_text: a file of `avgzsl embed-classes --descriptions`, "
                          f"or write that file as class_text_descriptions.npy beside the dataset's text files")
    errors, warnings = check_leakage(bench)
    for w in warnings:
        log.warning(w)
    if errors and not cfg.allow_leakage:
        raise LeakageError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
                           + "; set allow_leakage=true to run anyway (it is recorded in the run folder)")
    run = RunFolder(out_dir) if out_dir is not None else None
    if run is not None:
        run.start(cfg, bench, device, resume=resume, leakage=errors)
    text_space = {"name": bench.text_space,
                  "dim": int(bench.text.shape[1]), "feature_set": bench.feature_set}
    if bench.info.get("class_text"):
        text_space["class_text"] = bench.info["class_text"]
    run_dict = cfg.to_dict()
    dims = bench.dims
    s = bench.splits
    text = torch.from_numpy(np.ascontiguousarray(bench.text, dtype=np.float32)).to(device)
    betas = cfg.betas()
    C_all = len(bench.class_names)
    state = run.load_state() if (run is not None and resume) else None
    timings = {}
    behaviours = cfg.reference()
    arithmetic = "float32" if "metric_arithmetic" in behaviours else "float64"
    val = EvalSet.build(s["stage_1_val_seen"], s["stage_1_val_unseen"], device)
    ref = None
    if behaviours:
        ref = ReferenceRun(behaviours, reference_rank(bench.class_names), get_model_class(cfg.model).reference_code,
                           val.data.labels.cpu().numpy(), cfg.n_batches, cfg.bs)

    def build():
        _seed(cfg.seed)  # each stage starts from the same initialisation, as the reference does
        model = build_model(cfg.model, cfg.model_cfg, dims).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                               betas=model.adam_betas, fused=cfg.fused_adam)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=cfg.scheduler_patience)
        return model, opt, sched

    def train_stage(number: int, train: Split, classes: np.ndarray, epochs: int, done: int, resumed: dict | None,
                    before_epoch, after_epoch, saved, on_row):
        return _train_stage(number, cfg, build, train, classes, epochs, done, resumed, text, C_all, device, run,
                            progress, before_epoch, after_epoch, saved, on_row, ref, pack)

    def validate(model, betas_, distance_fn=None):
        return evaluate(model, val.data, text, val.class_ids, val.seen_mask, betas_, cfg.eval_bs,
                        arithmetic=arithmetic, distance_fn=distance_fn)[0]

    # ---- stage 1: select the epoch (and beta) on validation ------------------------------
    st1 = state["stage1"] if state else {"best_epoch": -1, "best_hm": -1.0, "lrs": [], "best": None, "done": 0}

    def stage1_epoch(epoch, model, sched, lr, row, bar):
        if stages == 0:
            st1["done"] = epoch + 1
            return
        res = validate(model, betas)
        summ = res.summary()
        sched.step(summ["hm"])
        st1["lrs"].append(lr)
        # strict: ties keep the first epoch (reference best_epoch_rule: a best HM of 0 is always replaced)
        if best_epoch_update(st1["best_hm"], summ["hm"], "best_epoch_rule" in behaviours):
            st1.update(best_epoch=epoch, best_hm=summ["hm"], best=summ, curve=_curve(res))
            if "mode_betas" in behaviours and model.reference_mode_betas:
                st1["mode_betas"] = [validate(model, betas, lambda b, e, m=m: model.mode_distances(b, e)[m]).beta
                                     for m in ("audio", "video")] + [summ["beta"]]
            if run is not None:
                save_checkpoint(run.stage1_best_path, model, run_dict, text_space,
                                stage=1, epoch=epoch, beta=summ["beta"])
        st1["done"] = epoch + 1
        st1.setdefault("history", []).append(summ)
        bar.set_postfix(hm=f"{100 * summ['hm']:.2f}", best=st1["best_epoch"] + 1)
        row["val"] = summ
        log.info("stage 1 epoch %d/%d  loss %.4f  val S %.2f U %.2f HM %.2f ZSL %.2f beta %.3f",
                 epoch + 1, cfg.epochs, row["loss"].get("total", float("nan")), 100 * summ["seen"],
                 100 * summ["unseen"], 100 * summ["hm"], 100 * summ["zsl"], summ["beta"])

    t0 = time.perf_counter()
    if not (state and state["stage"] > 1):
        train_stage(1, s["stage_1_train"], s["stage_1_train"].classes, cfg.epochs, st1["done"], state,
                    lambda epoch, opt: None, stage1_epoch, lambda epoch: {"stage": 1, "stage1": st1}, on_epoch)
        state = None  # stage 2 starts fresh unless we resumed inside it
    timings["stage1_s"] = time.perf_counter() - t0
    if stages == 0:
        return {"stage1_s": timings["stage1_s"]}
    best_epoch, best_beta = st1["best_epoch"], st1["best"]["beta"]
    mode_betas = st1.get("mode_betas") if "mode_betas" in behaviours else None
    if "metric_arithmetic" in behaviours:  # the reference's test beta: never 0 (see reference.test_beta)
        best_beta = test_beta(mode_betas or [best_beta], ref.code)
    elif mode_betas:
        best_beta = sum(mode_betas) / len(mode_betas)
    if stages == 1:
        return {"val": st1["best"], "best_epoch": best_epoch, "epochs": st1["history"]}

    # ---- stage 2: retrain on train + val for the selected number of epochs ----------------
    t0 = time.perf_counter()
    epochs2 = best_epoch + 1
    train2 = Split.concat([s["stage_1_train"], s["stage_1_val_seen"], s["stage_1_val_unseen"]])
    classes2 = s["stage_2_train"].classes
    if "stage2_classes" in behaviours:  # the reference never reads stage_2_train.txt
        classes2 = np.union1d(s["stage_1_train"].classes, s["stage_1_val_unseen"].classes)
    if np.setdiff1d(np.unique(train2.labels), classes2).size:
        raise LeakageError("stage-2 training videos include classes not listed in stage_2_train")

    def stage2_lr(epoch, opt):
        if cfg.stage2_lr == "replay":
            _set_lr(opt, st1["lrs"][epoch])

    def stage2_epoch(epoch, model, sched, lr, row, bar):
        if cfg.stage2_lr == "reference":
            res = validate(model, betas)
            sched.step(res.summary()["hm"])
            row["val_trained_on"] = res.summary()
        log.info("stage 2 epoch %d/%d  loss %.4f  lr %.2e", epoch + 1, epochs2, row["loss"].get("total", float("nan")), lr)

    model = train_stage(2, train2, classes2, epochs2, state["done2"] if state else 0, state, stage2_lr, stage2_epoch,
                        lambda epoch: {"stage": 2, "stage1": st1, "done2": epoch + 1}, None)
    timings["stage2_s"] = time.perf_counter() - t0

    # ---- test ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    test = EvalSet.build(s["stage_2_test_seen"], s["stage_2_test_unseen"], device)
    nearest, kept, class_emb = nearest_classes(model, test.data, text, test.class_ids, test.seen_mask,
                                              cfg.eval_bs, progress, keep_embeddings=2000 if run else 0)
    labels = test.data.labels.cpu().numpy()
    res = gzsl_metrics(nearest, labels, test.class_ids, test.seen_mask, np.array([best_beta]), arithmetic)
    grid = gzsl_metrics(nearest, labels, test.class_ids, test.seen_mask, betas, arithmetic)  # for plots only
    modalities = modality_breakdown(model, test, text, labels, nearest, cfg.eval_bs)
    timings["test_s"] = time.perf_counter() - t0
    results = {
        "test": res.summary(),
        "val": st1["best"],
        "best_epoch": best_epoch,
        "stage2_epochs": epochs2,
        "model": cfg.model,
        "dataset": bench.name,
        "feature_set": bench.feature_set,
        "text_alignment": cfg.text_alignment,
        "split": cfg.split,
        "seed": cfg.seed,
        "reference_behaviours": sorted(behaviours),  # empty: our protocol (config.REFERENCE_BEHAVIOURS)
        "test_beta": best_beta,
        "val_mode_betas": mode_betas,  # reference mode_betas: [audio, video, both] validation betas
        "curves": {"val": st1["curve"], "test_grid": _curve(grid)},
    }
    if modalities:
        results["modalities"] = modalities
    log.info("test  S %.2f  U %.2f  HM %.2f  ZSL %.2f  (beta %.3f from validation)", 100 * res.summary()["seen"],
             100 * res.summary()["unseen"], 100 * res.summary()["hm"], 100 * res.summary()["zsl"], best_beta)
    if run is not None:
        save_checkpoint(run.stage2_final_path, model, run_dict, text_space,
                        stage=2, epoch=epochs2 - 1, beta=best_beta)
        run.save_eval("test", nearest=nearest, labels=labels, class_ids=test.class_ids, seen_mask=test.seen_mask,
                      embeddings=None if kept is None else kept[1],
                      embedding_index=None if kept is None else kept[0], class_embeddings=class_emb,
                      class_names=np.array([bench.class_names[i] for i in test.class_ids]))
        run.finish(results, timings)
    return results


def check_dims(model_dims: dict, bench: Benchmark, where) -> None:
    """A model only runs on features of the dims it was trained on."""
    data = bench.dims.to_dict()
    diff = [f"{k} {model_dims[k]}-d in the model vs {data[k]}-d in the data" for k in ("audio", "video", "text")
            if model_dims.get(k) != data[k]]
    if diff:
        raise DataError(f"{where}: feature dims differ from {bench.info.get('root', bench.name)}: " + "; ".join(diff))


def evaluate_run(run_dir: str | Path, bench: Benchmark, device: str = "cpu") -> dict:
    """Re-evaluate a finished run's stage-2 model on the test set at its stored beta."""
    path = RunFolder(run_dir).stage2_final_path
    model, ckpt = load_model(path, device)
    if ckpt.get("beta") is None:  # read_checkpoint allows none (stage-1 files); a final model needs its beta
        raise AvgzslError(f"{path}: the checkpoint stores no beta; is it the final model of a finished run?")
    check_dims(ckpt["dims"], bench, path)
    cfg = RunConfig.from_dict(ckpt["run_config"], where=str(path))
    s = bench.splits
    test = EvalSet.build(s["stage_2_test_seen"], s["stage_2_test_unseen"], device)
    text = torch.from_numpy(np.ascontiguousarray(bench.text, dtype=np.float32)).to(device)
    res, _ = evaluate(model, test.data, text, test.class_ids, test.seen_mask, np.array([ckpt["beta"]]), cfg.eval_bs)
    return res.summary()


__all__ = ["run_protocol", "evaluate_run", "check_leakage", "EvalSet", "read_checkpoint"]
