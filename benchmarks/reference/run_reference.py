"""Run the public ClipClap-GZSL reference on an avgzsl-layout dataset root; write one JSON per run.

    python benchmarks/reference/run_reference.py --ref CLONE --data ROOT --out results/NAME.json \
        [--seed 42] [--threads 1] [--epochs 20] [--lr 7e-5] [--python PY] [--workdir DIR] [--label TEXT]

CLONE is a work tree of github.com/dkurzend/ClipClap-GZSL that you made yourself (this script fetches
nothing). ROOT is what `prepare_data.py` writes (the reference cannot read `avgzsl synth`'s scalar fps).
--python is an interpreter with torch and the reference's imports (configargparse, einops, opt_einsum,
tensorboard, h5py, pandas, matplotlib, scikit-learn, pyyaml, tqdm); default: this one.

What it does:
1. Patches the clone, idempotently (a second run finds them applied and changes nothing), for torch 2.13:
   a. every `verbose=True` keyword is dropped from the `ReduceLROnPlateau(...)` calls in
      src/clipclap_model.py (torch 2.13 no longer takes the argument; the scheduler is otherwise the same);
   b. in src/utils.py, the two `del` statements in log_hparams that remove keys the argument namespace does
      not have are turned into `pop(key, None)` (the run otherwise dies after the test numbers are printed,
      while logging hyper-parameters to TensorBoard).
   Nothing else in the clone is changed.
2. Gives the reference a scratch root (WORKDIR/data/UCF with links to ROOT's class-split/ and features/),
   so that the `_features_processed` cache the reference writes never lands in ROOT and is never stale.
3. Runs the README's UCF command (`main.py --cfg config/clipclap.yaml --run all --dataset_name UCF
   --epochs 20 --lr 0.00007 --use_wavcaps_embeddings True --modality both --word_embeddings both
   --device cpu`, plus --root_dir, --log_dir, --seed, --feature_extraction_method = ROOT's one feature folder)
   in a child process with OMP/MKL threads and torch.set_num_threads set to --threads.
   The child records, without changing what the reference computes or draws from any RNG, by wrapping
   four of its functions in memory: the per-epoch TensorBoard loss logging (epoch means of every loss term),
   the S/U/HM/ZSL/beta evaluation (every validation epoch, the test-time validation pass and the test),
   the scheduler step (lr before and after) and each stage's entry (its best epoch and its epoch count).
4. Writes the common JSON (`compare.py` reads it): stage-1 epochs (lr, loss terms, val S/U/HM/ZSL/beta),
   best epoch, stage-2 epochs (lr, loss terms, val numbers on the now-trained-on validation set), test.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------- patches


def _patch_scheduler_verbose(text: str) -> str:
    """Drop a `verbose=True` keyword from each ReduceLROnPlateau call (one call per line in that file)."""
    out = []
    for line in text.splitlines(keepends=True):
        if "ReduceLROnPlateau(" in line:
            line = re.sub(r",\s*verbose\s*=\s*True\s*(?=\))", "", line)
        out.append(line)
    return "".join(out)


def _patch_del_missing_keys(text: str) -> str:
    """`del <name>['k']` -> `<name>.pop('k', None)` for the hip_blocks keys only."""
    return re.sub(r"(?m)^([ \t]*)del (\w+)\[('\w*hip_blocks')\][ \t]*$", r"\1\2.pop(\3, None)", text)


PATCHES = [
    ("src/clipclap_model.py", _patch_scheduler_verbose, lambda t: "verbose=True" not in t),
    ("src/utils.py", _patch_del_missing_keys, lambda t: "del args_dict" not in t),
]


def apply_patches(clone: Path) -> list[str]:
    """Apply both patches; returns the files changed now (empty when already patched)."""
    changed = []
    for rel, fn, done in PATCHES:
        path = clone / rel
        if not path.is_file():
            raise SystemExit(f"{path}: not found; is {clone} a ClipClap-GZSL work tree?")
        text = path.read_text()
        if done(text):
            continue
        new = fn(text)
        if not done(new):
            raise SystemExit(f"{path}: patch did not apply (has the reference changed?)")
        path.write_text(new)
        changed.append(rel)
    return changed


# ---------------------------------------------------------------------------------------- child side


def driver(spec: dict) -> None:
    """Runs inside the clone (cwd), imports its main.py, records through wrappers, runs `--run all`."""
    import torch

    torch.set_num_threads(spec["threads"])
    sys.path.insert(0, os.getcwd())
    sys.argv = ["main.py"] + spec["argv"]
    import main as ref  # the reference's main.py
    import src.clipclap_model as model_mod
    import src.train as train_mod
    import src.utils as utils_mod

    rec = {"events": [], "stages": []}
    phase = {"name": None}

    orig_logs = train_mod.add_logs_tensorboard

    def logs(details, writer, n, step, which):
        orig_logs(details, writer, n, step, which)
        rec["events"].append({"kind": "loss", "phase": phase["name"], "which": which, "n_batches": int(n),
                              "terms": {k.split("/", 1)[1]: float(v) / n for k, v in details.items()}})

    train_mod.add_logs_tensorboard = logs

    orig_eval = utils_mod.get_best_evaluation

    def best_eval(*a, **kw):
        out = orig_eval(*a, **kw)
        rec["events"].append({"kind": "eval", "phase": phase["name"], "fixed_beta": kw.get("best_beta"),
                              **{k: float(out[k]) for k in ("seen", "unseen", "hm", "zsl", "beta")}})
        return out

    utils_mod.get_best_evaluation = best_eval

    orig_sched = model_mod.ClipClap_model.optimize_scheduler

    def sched(self, value):
        before = float(self.optimizer_gen.param_groups[0]["lr"])
        orig_sched(self, value)
        rec["events"].append({"kind": "sched", "phase": phase["name"], "value": float(value), "lr_before": before,
                              "lr_after": float(self.optimizer_gen.param_groups[0]["lr"])})

    model_mod.ClipClap_model.optimize_scheduler = sched

    orig_main = ref.main

    def stage(args):
        phase["name"] = "stage2" if args.retrain_all else "stage1"
        t0 = time.perf_counter()
        log_dir, best_epoch = orig_main(args)
        rec["stages"].append({"phase": phase["name"], "epochs": int(args.epochs), "best_epoch": best_epoch,
                              "wall_s": round(time.perf_counter() - t0, 1)})
        return log_dir, best_epoch

    ref.main = stage

    orig_get_eval = ref.get_evaluation

    def evaluation(args):
        phase["name"] = "test"
        t0 = time.perf_counter()
        out = orig_get_eval(args)
        rec["stages"].append({"phase": "test", "wall_s": round(time.perf_counter() - t0, 1)})
        return out

    ref.get_evaluation = evaluation
    try:
        ref.run()
    finally:
        Path(spec["record"]).write_text(json.dumps(rec) + "\n")


# ---------------------------------------------------------------------------------------- parent side


def _term_names(terms: dict) -> dict:
    names = {"total_loss": "total", "cross_entropy": "ce", "loss_reg": "reg", "loss_cmd_rec": "rec"}
    return {names.get(k, k): v for k, v in terms.items()}


def summarize(rec: dict) -> dict:
    """Raw events -> the common per-run JSON body."""
    ev = rec["events"]
    out: dict = {}
    for st in ("stage1", "stage2"):
        losses = [e for e in ev if e["phase"] == st and e["kind"] == "loss" and e["which"] == "train"]
        vlosses = [e for e in ev if e["phase"] == st and e["kind"] == "loss" and e["which"] == "val"]
        evals = [e for e in ev if e["phase"] == st and e["kind"] == "eval"]
        scheds = [e for e in ev if e["phase"] == st and e["kind"] == "sched"]
        rows = []
        for i, lo in enumerate(losses):
            row = {"epoch": i, "lr": scheds[i]["lr_before"] if i < len(scheds) else None,
                   "loss": _term_names(lo["terms"])}
            if i < len(vlosses):
                row["val_loss"] = _term_names(vlosses[i]["terms"])
            if i < len(evals):
                row["val"] = {k: evals[i][k] for k in ("seen", "unseen", "hm", "zsl", "beta")}
            rows.append(row)
        out[st] = rows
    stages = {s["phase"]: s for s in rec["stages"]}
    out["best_epoch"] = stages.get("stage1", {}).get("best_epoch")
    out["stage2_epochs"] = stages.get("stage2", {}).get("epochs")
    tests = [e for e in ev if e["phase"] == "test" and e["kind"] == "eval"]
    if len(tests) >= 2:
        out["test_val"] = {k: tests[0][k] for k in ("seen", "unseen", "hm", "zsl", "beta")}
        out["test"] = {k: tests[1][k] for k in ("seen", "unseen", "hm", "zsl", "beta")}
    out["wall_s"] = {s["phase"]: s["wall_s"] for s in rec["stages"]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", type=Path, help="work tree of the ClipClap-GZSL repository")
    ap.add_argument("--data", type=Path, help="dataset root written by prepare_data.py")
    ap.add_argument("--out", type=Path, help="the JSON to write")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", default="0.00007")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--label", default="")
    ap.add_argument("--ref-commit", default=None, help="recorded in the JSON (the clone may have no .git)")
    ap.add_argument("--driver", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.driver:
        driver(json.loads(a.driver.read_text()))
        return 0
    if not (a.ref and a.data and a.out):
        ap.error("--ref, --data and --out are required")
    clone, data = a.ref.resolve(), a.data.resolve()
    changed = apply_patches(clone)
    feat = [p.name for p in (data / "features").iterdir() if p.is_dir()]
    if len(feat) != 1:
        raise SystemExit(f"{data}/features: expected one feature folder, found {feat}")
    work = (a.workdir or Path(tempfile.mkdtemp(prefix="clipclap_ref_"))).resolve()
    root = work / "data" / "UCF"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("class-split", "features"):
        link = root / name
        if not link.exists():
            link.symlink_to(data / name)
    argv = ["--cfg", "config/clipclap.yaml", "--run", "all", "--dataset_name", "UCF", "--epochs", str(a.epochs),
            "--lr", str(a.lr), "--use_wavcaps_embeddings", "True", "--modality", "both", "--word_embeddings", "both",
            "--device", "cpu", "--root_dir", str(root), "--log_dir", str(work / "logs"), "--seed", str(a.seed),
            "--feature_extraction_method", feat[0]]
    spec = {"threads": a.threads, "argv": argv, "record": str(work / "record.json")}
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               PYTHONHASHSEED=str(a.seed), PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    with (work / "stdout.log").open("w") as log:
        proc = subprocess.run([a.python, str(Path(__file__).resolve()), "--driver", str(spec_path)], cwd=clone,
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not (work / "record.json").exists():
        tail = (work / "stdout.log").read_text()[-3000:]
        raise SystemExit(f"reference run failed (rc {proc.returncode}); log {work / 'stdout.log'}:\n{tail}")
    rec = json.loads((work / "record.json").read_text())
    prep = data / "reference_prep.json"
    commit = a.ref_commit
    if commit is None:
        r = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True)
        commit = r.stdout.strip() or None
    payload = {"impl": "reference", "label": a.label or a.out.stem, "seed": a.seed, "threads": a.threads,
               "data": {"root": data.name, "prep": json.loads(prep.read_text()) if prep.exists() else None},
               "reference": {"repo": "dkurzend/ClipClap-GZSL", "commit": commit, "patched_now": changed,
                             "command": ["main.py"] + [x if not x.startswith(str(work)) else "<scratch>" +
                                                       x[len(str(work)):] for x in argv]},
               **summarize(rec), "wall_total_s": round(wall, 1)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(payload, indent=1) + "\n")
    t = payload.get("test", {})
    print(f"{a.out}: best epoch {payload['best_epoch']}, stage-2 epochs {payload['stage2_epochs']}, test "
          f"S {100 * t.get('seen', float('nan')):.2f} U {100 * t.get('unseen', float('nan')):.2f} "
          f"HM {100 * t.get('hm', float('nan')):.2f} ZSL {100 * t.get('zsl', float('nan')):.2f} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
