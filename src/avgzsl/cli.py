"""Command line: a thin layer over the library (argument parsing, logging, one-line errors).

Every command maps to one library call; an AvgzslError becomes one line on stderr and exit code 2
(`--debug` shows the traceback instead). Commands import the library inside their functions: with every
import at the top, `avgzsl --help` took ~3 s instead of ~0.25 s (torch, matplotlib).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from . import __version__
from .errors import AvgzslError

log = logging.getLogger("avgzsl")

def print_table(rows: list[tuple[str, dict]], file=None) -> None:
    """Rows of (label, {seen, unseen, hm, zsl, beta}) as a percent table (to sys.stdout as it is now, so a
    redirected or captured stdout gets it)."""
    file = file or sys.stdout
    w = max([len(r[0]) for r in rows] + [5])
    print(f"{'':{w}}  {'S':>6} {'U':>6} {'HM':>6} {'ZSL':>6} {'beta':>6}", file=file)
    for label, m in rows:
        print(f"{label:{w}}  {100 * m['seen']:6.2f} {100 * m['unseen']:6.2f} {100 * m['hm']:6.2f} "
              f"{100 * m['zsl']:6.2f} {m['beta']:6.3f}", file=file)


# ---- commands ----------------------------------------------------------------------------------

def cmd_models(args) -> int:
    from .models import list_models
    print("\n".join(list_models()))
    return 0


def cmd_presets(args) -> int:
    from .config import PRESET_DIR
    print("\n".join(sorted(q.stem for q in PRESET_DIR.glob("*.yaml"))))
    return 0


def cmd_synth(args) -> int:
    from .data.synthetic import make_synthetic
    t = time.perf_counter()
    from .settings import load_yaml
    knobs = {}
    for item in args.knob:  # key=value, the value read as YAML (as --set)
        key, sep, raw = item.partition("=")
        if not sep:
            raise AvgzslError(f"--knob {item!r}: expected key=value")
        knobs[key.strip()] = load_yaml(raw, f"--knob {key.strip()}")
    out = make_synthetic(args.like, args.out, scale=args.scale, seed=args.seed, temporal=args.temporal,
                         feature_set=args.features, progress=not args.quiet, overwrite=args.overwrite,
                         generator=args.generator, knobs=knobs)
    print(f"wrote {out} in {time.perf_counter() - t:.1f}s")
    return 0


def cmd_convert(args) -> int:
    from .config import RunConfig
    from .data import convert
    d = RunConfig()
    out = convert(args.root, args.out, split=args.split or d.split, feature_dir=args.feature_dir,
                  text_alignment=args.text_alignment or d.text_alignment, progress=not args.quiet)
    print(f"wrote {out}")
    return 0


def _load_bench(data: str, cfg, no_cache: bool = False, progress: bool = True):
    from .classtext import load_run_benchmark
    return load_run_benchmark(data, cfg, cache=not no_cache, progress=progress)


def default_run_dir(cfg, bench_name: str) -> Path:
    name = cfg.name or f"{cfg.model}-{bench_name.lower()}"
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args) -> int:
    from .config import load_config, resolve_config
    from .protocol import run_protocol
    from .reports.report import report_finished_run
    from .runfolder import RunFolder
    from .runlock import run_lock
    if args.resume:
        run_dir = Path(args.resume)
        if not RunFolder(run_dir).config_path.exists():
            raise AvgzslError(f"{run_dir}: no {RunFolder.CONFIG}; not a run folder")
        with run_lock(run_dir, create=False):  # held from the "finished?" check to the last write
            return _resume(args, run_dir)
    if not args.data:
        raise AvgzslError("train needs --data ROOT (a benchmark dataset root), or --resume RUN_DIR")
    cfg = load_config(resolve_config(args.config), args.set)
    with contextlib.ExitStack() as stack:
        if args.out:  # a folder in use is refused before the data are read, not after
            stack.enter_context(run_lock(args.out, discard_on_error=True))
        bench = _load_bench(args.data, cfg, args.no_cache, progress=not args.quiet)
        out = Path(args.out or default_run_dir(cfg, bench.name))
        log.info("run folder: %s", out)
        # the lock (re-entrant; taken here when --out was not given) is held until the report is written
        stack.enter_context(run_lock(out, discard_on_error=True))
        results = run_protocol(cfg, bench, out, device=args.device, progress=not args.quiet)
        report_finished_run(out)
    print_table([("val (stage 1)", results["val"]), ("test", results["test"])])
    print(f"run folder: {out}")
    return 0


def _resume(args, run_dir: Path) -> int:
    from .config import load_config, parse_set
    from .errors import ConfigError
    from .protocol import run_protocol
    from .reports.report import report_finished_run, write_report
    from .runfolder import FINISHED, RunFolder
    run = RunFolder(run_dir)
    if run.status() == FINISHED:
        if run.report_path.exists():
            print(f"{run_dir}: already finished")
            return 0
        try:  # killed while writing its report: finish that
            path = write_report(run_dir)
        except AvgzslError:
            raise
        except Exception as e:  # noqa: BLE001 - as at the end of a run: a plotting problem is a warning
            log.warning("%s: could not write report.html (%s: %s)", run_dir, type(e).__name__, e)
            print(f"{run_dir}: already finished")
            return 0
        print(f"{run_dir}: already finished; wrote the missing report {path}")
        return 0
    cfg_path = run.config_path
    sets = parse_set(args.set)
    other = sorted(set(sets) - {"allow_data_change", "logger"})
    if other:
        raise ConfigError(f"--set {other[0]}: --resume continues {cfg_path} unchanged; only "
                          "allow_data_change=true and logger (or --logger) can be given with it")
    cfg = load_config(cfg_path, sets)
    bench = _load_bench(args.data or _stored_data_root(run_dir), cfg, args.no_cache, progress=not args.quiet)
    log.info("run folder: %s", run_dir)
    results = run_protocol(cfg, bench, run_dir, device=args.device, progress=not args.quiet, resume=True)
    report_finished_run(run_dir)
    print_table([("val (stage 1)", results["val"]), ("test", results["test"])])
    print(f"run folder: {run_dir}")
    return 0


def _stored_data_root(run_dir: Path) -> str:
    from .runfolder import RunFolder, data_where
    env = RunFolder(run_dir).env_path
    try:
        data = json.loads(env.read_text())["data"]
        if data.get("root") or data.get("native_path"):
            return data_where(data)  # a native folder's own path: its recorded root is where it came from
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        pass
    raise AvgzslError(f"{env}: no data root recorded; pass --data ROOT")


def cmd_eval(args) -> int:
    from .runlock import run_lock
    with run_lock(args.run_dir, create=False, required=False):  # not while another process rewrites it
        return _eval(args)


def _eval(args) -> int:
    from .checkpoint import read_checkpoint
    from .config import RunConfig
    from .protocol import evaluate_run
    from .runfolder import RunFolder
    run_dir = Path(args.run_dir)
    ckpt = read_checkpoint(RunFolder(run_dir).stage2_final_path)
    cfg = RunConfig.from_dict(ckpt["run_config"])
    bench = _load_bench(args.data or _stored_data_root(run_dir), cfg, progress=not args.quiet)
    res = evaluate_run(run_dir, bench, device=args.device)
    print_table([("test", res)])
    return 0


# The demo's own budget (our choice): two thirds of the preset's batches per epoch, so that the demo ends
# within 5 minutes on a 2-core CPU; `--set n_batches=300` gives the preset's budget back.
DEMO_SETTINGS = ["n_batches=200"]


def cmd_demo(args) -> int:
    from .config import PRESET_DIR
    from .data.cache import default_cache
    from .data.synthetic import synthetic_root
    data = synthetic_root("ucf", 1.0, 0, out=args.data_dir or default_cache() / "demo" / "ucf-like-v2-seed0",
                          progress=not args.quiet)
    config = args.config or ("mft_ucf" if (PRESET_DIR / "mft_ucf.yaml").exists() else "clipclap_ucf")
    ns = argparse.Namespace(data=str(data), config=config, set=DEMO_SETTINGS + list(args.set or []),
                            device=args.device, out=args.out, quiet=args.quiet, resume=None, no_cache=False)
    t = time.perf_counter()
    code = cmd_train(ns)
    print(f"demo finished in {time.perf_counter() - t:.0f}s (synthetic data: numbers say nothing about real benchmarks)")
    return code


def cmd_report(args) -> int:
    from .reports.report import write_report
    print(f"wrote {write_report(args.run_dir, args.out, embedding=args.embedding)}")
    return 0


def cmd_compare(args) -> int:
    from .reports.compare import compare_runs
    table, png = compare_runs(args.run_dirs, args.out)
    print(table)
    print(f"calibration curves: {png}")
    return 0


def _csv(text: str, cast=str) -> list:
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise AvgzslError(f"{text!r}: expected a comma-separated list") from None


def pack_size(text: str, executor: str) -> int | str:
    """--pack: "auto" (a probe per model picks; local executor only) or an integer >= 1."""
    if text == "auto":
        return "auto" if executor == "local" else 1
    try:
        k = int(text)
    except ValueError:
        raise AvgzslError(f"--pack must be an integer >= 1 or auto, got {text!r}") from None
    if k < 1:
        raise AvgzslError(f"--pack must be an integer >= 1 or auto, got {text!r}")
    return k


def cmd_reproduce(args) -> int:
    from .executors import make_runner
    from .reproduce import reproduce
    from .threads import local_jobs
    jobs, per_run = local_jobs(args.jobs, args.device, n_runs=10**6, threads=args.threads) \
        if args.executor == "local" else (1, None)
    pack = pack_size(args.pack, args.executor)
    reproduce(datasets=_csv(args.datasets), tables=_csv(args.tables, int), seeds=_csv(args.seeds, int),
              out=Path(args.out), data_root=Path(args.data_root) if args.data_root else None, device=args.device,
              dry_run=args.dry_run, probe=not args.no_probe, synthetic_scale=args.synthetic_scale,
              executor=args.executor,
              extra_sets=tuple(args.set), progress=not args.quiet, jobs=jobs, threads_per_run=per_run,
              pack=pack, runner=make_runner(args.executor, args.ray_address, args.gpus_per_run,
                                            progress=not args.quiet, jobs=jobs, threads=per_run,
                                            pack=pack if isinstance(pack, int) else 1))
    return 0


def cmd_sweep(args) -> int:
    from .executors import require_tune
    from .sweep import format_summary, load_sweep, run_sweep  # Ray itself is imported when the sweep runs
    require_tune()  # one line saying what to install, before anything else
    spec = load_sweep(args.config, args.set)
    for key in ("device", "cpus_per_trial", "gpus_per_trial"):
        if getattr(args, key, None) is not None:
            setattr(spec, key, getattr(args, key))
    out = args.out or spec.out or str(Path("runs") / "sweeps" / Path(args.config).stem)
    summary = run_sweep(spec, out, ray_address=args.ray_address, progress=not args.quiet)
    print(format_summary(summary))
    print(f"summary: {Path(out) / 'summary.json'} and {Path(out) / 'trials.csv'}")
    if summary["best"] is None:
        raise AvgzslError(f"every trial failed; first: {summary['trials'][0].get('error', '?')}")
    if "error" in summary["best"]:
        raise AvgzslError(f"the full protocol run of the best config failed: {summary['best']['error']}")
    return 0


def cmd_embed_classes(args) -> int:
    from .encoders import embed_classes, get_encoder, read_names
    names = read_names(args.names)
    kw = dict(weights=args.weights, clip_weights=args.clip_weights, clap_weights=args.clap_weights,
              templates=args.templates, device=args.device)
    if args.descriptions:
        from .classtext import describe_classes, read_descriptions
        emb = describe_classes(names, read_descriptions(args.descriptions), get_encoder(args.encoder, **kw),
                               source=args.descriptions, progress=not args.quiet)
    else:
        emb = embed_classes(names, args.encoder, progress=not args.quiet, **kw)
    out = emb.save(args.out, overwrite=args.overwrite)
    print(f"wrote {out}: {len(emb)} classes x {emb.dim} (encoder {emb.encoder}, text space {emb.space})")
    return 0


def cmd_extract(args) -> int:
    from .extract import extract
    res = extract(args.video_dir, args.out, weights=args.weights, clip_weights=args.clip_weights,
                  clap_weights=args.clap_weights, device=args.device, batch_size=args.batch_size,
                  progress=not args.quiet, overwrite=args.overwrite, frame_recipe=args.frame_recipe,
                  audio_encoder=args.audio_encoder)
    print(res.summary())
    return 0


def cmd_predict(args) -> int:
    from .predict import format_prediction, predict_files
    pred, _ = predict_files(args.run, args.features, args.classes, top_k=args.top_k, calibrated=args.calibrated,
                            seen_classes=args.seen_classes, out=args.out, weights=args.weights,
                            clip_weights=args.clip_weights, clap_weights=args.clap_weights,
                            templates=args.templates, device=args.device,
                            splits=_csv(args.split) if args.split else None, progress=not args.quiet)
    if not args.quiet:
        print(format_prediction(pred))
    if args.out:
        print(f"wrote {args.out} ({len(pred)} videos, top {pred.indices.shape[1]}, beta {pred.beta:g})")
    return 0


def cmd_make_benchmark(args) -> int:
    from .own_data import describe, make_benchmark
    opts = dict(val_unseen=args.val_unseen, test_unseen=args.test_unseen, val_seen=args.val_seen,
                test_seen=args.test_seen)
    if args.val_unseen_classes or args.test_unseen_classes:
        from .encoders import read_names
        opts = dict(val_seen=args.val_seen, test_seen=args.test_seen,
                    val_unseen_classes=read_names(args.val_unseen_classes) if args.val_unseen_classes else None,
                    test_unseen_classes=read_names(args.test_unseen_classes) if args.test_unseen_classes else None)
    out = make_benchmark(args.features, args.classes, args.out, labels=args.labels, name=args.name,
                         overwrite=args.overwrite, seed=args.seed, **opts)
    print(describe(out))
    return 0


def cmd_import_checkpoint(args) -> int:
    from .import_checkpoint import describe_import, import_checkpoint
    out = import_checkpoint(args.family, args.path, args.out, beta=args.beta, overwrite=args.overwrite,
                            split=args.split)
    print(describe_import(out))
    return 0


# ---- parser ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avgzsl", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"avgzsl {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--quiet", dest="global_quiet", action="store_true",
                   help="no progress bars in any command (as the commands' own --quiet)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    sub = p.add_subparsers(dest="command", required=True)

    def common_run(q):
        q.add_argument("--config", help="YAML file or preset name (avgzsl presets)")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key (repeatable; model keys as MODEL.KEY=VALUE)")
        q.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
        q.add_argument("--out", help="run folder (default runs/<name>-<time>)")
        q.add_argument("--quiet", action="store_true", help="no progress bars")
        q.add_argument("--logger", help="experiment trackers: auto (default: tensorboard if installed) | none | "
                                        "tensorboard,wandb,mlflow (as --set logger=...)")
        threads_arg(q)

    def threads_arg(q):
        q.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: OMP_NUM_THREADS if set, "
                                                                "else the cores this process may use)")

    q = sub.add_parser("models", help="list registered models")
    q.set_defaults(fn=cmd_models)
    q = sub.add_parser("presets", help="list shipped config presets")
    q.set_defaults(fn=cmd_presets)

    q = sub.add_parser("synth", help="write a synthetic benchmark in the field's layout")
    q.add_argument("--like", choices=["ucf", "activitynet", "vggsound"], default="ucf")
    q.add_argument("--scale", type=float, default=1.0)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--temporal", action="store_true", help="per-second (T, D) features")
    q.add_argument("--features", choices=["clipclap", "cls", "main"], default="clipclap")
    q.add_argument("--generator", choices=["v2", "linear"], default="v2",
                   help="v2: the default latent model (docs/synthetic.md); linear: v1")
    q.add_argument("--knob", action="append", default=[], metavar="KEY=VALUE",
                   help="a v2 generator knob (docs/synthetic.md), repeatable")
    q.add_argument("--overwrite", action="store_true")
    q.add_argument("--quiet", action="store_true")
    q.add_argument("--out", required=True)
    q.set_defaults(fn=cmd_synth)

    q = sub.add_parser("convert", help="write a dataset root in the native memory-mappable format")
    q.add_argument("root")
    q.add_argument("--out", required=True)
    q.add_argument("--split", choices=["cls_split", "main_split"])
    q.add_argument("--feature-dir")
    q.add_argument("--text-alignment", choices=["by_name", "reference_order"])
    q.set_defaults(fn=cmd_convert)

    q = sub.add_parser("train", help="stage 1 -> stage 2 -> test in one call")
    q.add_argument("--data", help="dataset root (the field's layout or avgzsl's native format)")
    q.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    q.add_argument("--no-cache", action="store_true", help="read the source files, skip the array cache")
    common_run(q)
    q.set_defaults(fn=cmd_train)

    q = sub.add_parser("eval", help="re-evaluate a finished run's final model on the test set")
    q.add_argument("run_dir")
    q.add_argument("--data", help="dataset root (default: the one the run recorded)")
    q.add_argument("--device", default="cpu")
    threads_arg(q)
    q.set_defaults(fn=cmd_eval)

    q = sub.add_parser("report", help="write report.html (and PNGs) for a run folder")
    q.add_argument("run_dir")
    q.add_argument("--out", help="HTML path (default RUN_DIR/report.html)")
    q.add_argument("--embedding", choices=["pca", "tsne"], default="pca")
    q.set_defaults(fn=cmd_report)

    q = sub.add_parser("compare", help="one table of several runs and their calibration curves")
    q.add_argument("run_dirs", nargs="+")
    q.add_argument("--out", help="PNG path (default ./compare.png)")
    q.set_defaults(fn=cmd_compare)

    q = sub.add_parser("reproduce", help="the paper's Tables 2-5 as mean ± std over seeds")
    q.add_argument("--data-root", help="folder with UCF/, ActivityNet/, VGGSound/ (default: synthetic benchmarks)")
    q.add_argument("--datasets", default="ucf,activitynet,vggsound")
    q.add_argument("--tables", default="2,3,4,5")
    q.add_argument("--seeds", default="0,1,2")
    q.add_argument("--out", default="runs/reproduce")
    q.add_argument("--device", default="cpu")
    q.add_argument("--dry-run", action="store_true", help="list the runs and their estimated time (from a few "
                                                           "seconds' training probe per model on this machine)")
    q.add_argument("--no-probe", action="store_true", help="with --dry-run: estimate from the shipped benchmark "
                                                            "rates instead of probing")
    q.add_argument("--synthetic-scale", type=float, default=1.0, help="videos per class of the synthetic default")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    q.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: one run after another; ray: runs in parallel as Ray tasks (docs/scaling.md)")
    q.add_argument("--ray-address", metavar="ADDR",
                   help="a running Ray cluster (auto | HOST:6379 | ray://HOST:10001); default: Ray on this machine")
    q.add_argument("--gpus-per-run", type=float, default=0.0, metavar="F",
                   help="GPUs reserved per Ray task (0.5: two runs share a GPU); needs --device cuda")
    q.add_argument("--jobs", default="auto", metavar="J",
                   help="local executor: runs at once, in worker processes (default auto: on a CPU one per core "
                        "at 1 thread each, on a GPU 1; docs/scaling.md)")
    q.add_argument("--pack", default="auto", metavar="K",
                   help="local executor: train up to K seeds of one variant as one stacked model (docs/scaling.md; "
                        "default auto: a short probe per model keeps packing only where it is faster)")
    threads_arg(q)
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(fn=cmd_reproduce)

    def weight_args(q):
        q.add_argument("--weights", metavar="DIR", help="local model folder (for CLIP+CLAP: a folder with clip/ and clap/)")
        q.add_argument("--clip-weights", metavar="DIR", help="local CLIP folder (transformers format)")
        q.add_argument("--clap-weights", metavar="DIR", help="local CLAP folder (transformers format)")
        q.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
        q.add_argument("--quiet", action="store_true", help="no progress bars")

    q = sub.add_parser("embed-classes", help="text embeddings of class names (one per line) with a text encoder")
    q.add_argument("names", help="text file, one class name per line")
    q.add_argument("--encoder", default="minilm", help="clip | clap | clipclap | minilm (default minilm)")
    q.add_argument("--templates", help="prompt templates: person | vggsound | none | FILE (one per line, with {})")
    q.add_argument("--descriptions", help="CSV, one row per class: name, description, ... (each class vector = "
                                          "the mean of its name's and descriptions' embeddings; KDA)")
    q.add_argument("--out", required=True, help="FILE.npy (+ FILE.json beside it) or a native folder")
    q.add_argument("--overwrite", action="store_true")
    weight_args(q)
    q.set_defaults(fn=cmd_embed_classes)

    q = sub.add_parser("extract", help="clipclap features (CLIP middle frame, CLAP 10 s audio) of a folder of videos")
    q.add_argument("video_dir")
    q.add_argument("--out", required=True, help="output folder (native feature format)")
    q.add_argument("--batch-size", type=int, default=8)
    q.add_argument("--frame-recipe", default="rgb", choices=["rgb", "clipclap-ucf", "clipclap-activitynet",
                                                             "clipclap-vggsound"],
                   help="which middle frame CLIP sees and how: rgb (default), or ClipClap-GZSL's extraction of that "
                        "dataset, quirks included (for models trained on its released features; docs/predict.md)")
    q.add_argument("--audio-encoder", choices=["laion", "wavcaps"], default="laion",
                   help="laion: LAION-CLAP (clip-vit-b32+clap-laion); wavcaps: WavCaps HTSAT-BERT CLAP, the space of "
                        "ClipClap-GZSL's released features (--clap-weights HTSAT_BERT_zero_shot.pt)")
    q.add_argument("--overwrite", action="store_true")
    weight_args(q)
    q.set_defaults(fn=cmd_extract)

    q = sub.add_parser("make-benchmark", help="a benchmark of one's own videos: extracted features + class embeddings "
                                              "-> a dataset root for train (docs/own-data.md)")
    q.add_argument("--features", required=True, help="features folder (avgzsl extract of VIDEOS/<class>/...)")
    q.add_argument("--classes", required=True, help="class embeddings (avgzsl embed-classes) of every class")
    q.add_argument("--out", required=True, help="output folder (native benchmark format)")
    q.add_argument("--labels", help="CSV with columns video,class (default: each video's class folder)")
    q.add_argument("--val-unseen", type=float, default=0.2, help="fraction of classes unseen in stage 1 (default 0.2)")
    q.add_argument("--test-unseen", type=float, default=0.2, help="fraction of classes unseen at test (default 0.2)")
    q.add_argument("--val-unseen-classes", metavar="FILE", help="the stage-1 unseen class names, one per line")
    q.add_argument("--test-unseen-classes", metavar="FILE", help="the test unseen class names, one per line")
    q.add_argument("--val-seen", type=float, default=0.1, help="fraction of a seen class's videos for validation")
    q.add_argument("--test-seen", type=float, default=0.1, help="fraction of a seen class's videos for the test")
    q.add_argument("--seed", type=int, default=0, help="seed of the class and video split")
    q.add_argument("--name", help="dataset name (default: the output folder's name)")
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(fn=cmd_make_benchmark)

    q = sub.add_parser("predict", help="top-k classes of videos with a trained run")
    q.add_argument("--run", required=True, help="run folder (uses checkpoints/stage2_final.pt) or a checkpoint file")
    q.add_argument("--features", required=True, help="features folder (avgzsl extract) or a native benchmark folder")
    q.add_argument("--classes", required=True, help="NAMES.txt (embedded with the run's encoder) or EMBEDDINGS (.npy/folder)")
    q.add_argument("--top-k", type=int, default=5)
    q.add_argument("--calibrated", metavar="BETA|auto", help="add BETA to the distances of seen classes (auto: the run's)")
    q.add_argument("--seen-classes", metavar="FILE", help="seen class names, one per line (default with --calibrated: "
                   "the run's test-seen classes)")
    q.add_argument("--split", help="stage folders of a benchmark features folder (default: the test folders)")
    q.add_argument("--templates", help="prompt templates when --classes is a names file")
    q.add_argument("--out", help="FILE.csv or FILE.json")
    weight_args(q)
    threads_arg(q)
    q.set_defaults(fn=cmd_predict)

    q = sub.add_parser("import-checkpoint", help="a published model's checkpoint as a run folder for eval/predict")
    q.add_argument("family", help="whose checkpoint it is: clipclap (the public ClipClap-GZSL code)")
    q.add_argument("path", help="the checkpoint file (.pt)")
    q.add_argument("--out", required=True, help="run folder to write")
    q.add_argument("--beta", type=float, help="calibration beta (not in the public checkpoint; default 0.0)")
    q.add_argument("--split", default="cls_split", choices=("cls_split", "main_split"),
                   help="the class split the model was trained on (recorded in the run config)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    q.set_defaults(fn=cmd_import_checkpoint)

    q = sub.add_parser("sweep", help="hyper-parameter search with Ray Tune on stage-1 validation HM, "
                                     "then the best config through the full protocol")
    q.add_argument("--config", required=True, metavar="SWEEP.yaml", help="sweep file (configs/sweeps/example.yaml)")
    q.add_argument("--out", help="output folder (default: the file's out:, else runs/sweeps/<file name>)")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fixed override for every trial")
    q.add_argument("--ray-address", metavar="ADDR", help="a running Ray cluster; default: Ray on this machine")
    q.add_argument("--device", help="cpu | cuda (default: the file's device, else cpu)")
    q.add_argument("--cpus-per-trial", type=float, help="CPUs (= torch threads) per trial (default 1)")
    q.add_argument("--gpus-per-trial", type=float, help="GPUs per trial (0.5: two trials share a GPU)")
    q.add_argument("--quiet", action="store_true", help="no Tune progress table")
    q.set_defaults(fn=cmd_sweep)

    q = sub.add_parser("demo", help="synthetic UCF-like data, then the full protocol with the MFT preset "
                       "(at 200 batches per epoch: DEMO_SETTINGS)")
    q.add_argument("--data-dir", help="where to write the synthetic data (default: the avgzsl cache)")
    common_run(q)
    q.set_defaults(fn=cmd_demo, config=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # one switch for every bar: ours take `progress`; Hugging Face's read this before they are imported
    args.quiet = bool(getattr(args, "quiet", False) or args.global_quiet)
    if getattr(args, "logger", None):  # --logger X is --set logger=X, after any other --set
        args.set = [*args.set, f"logger={args.logger}"]
    if args.quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:
        logging.getLogger("avgzsl").setLevel(logging.INFO)
    try:
        if hasattr(args, "threads"):  # the commands that train or evaluate
            from .threads import set_threads
            set_threads(args.threads)
        return args.fn(args) or 0
    except AvgzslError as e:
        if args.debug:
            raise
        print(f"avgzsl: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # last resort for a file error no layer below named (the write paths raise WriteError): the
        # file and the system's reason on one line
        if args.debug or not e.filename:
            raise
        why = e.strerror or str(e)
        print(f"avgzsl: error: {e.filename}: {why[:1].lower() + why[1:]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avgzsl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
