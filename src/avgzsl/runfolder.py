"""The run folder: every file of one protocol run, named in one place (`RunFolder`).

    RUN_DIR/
      config.yaml          resolved run config (every default written out)
      env.json             versions, device, threads, git commit, data provenance, leakage overrides
      log.jsonl            one JSON object per epoch (loss terms, lr, val S/U/HM/ZSL, beta)
      steps.jsonl          one JSON object per epoch with every step's loss terms ({stage, epoch,
                           first_step, terms: {term: [value per step]}}; the report draws them)
      tensorboard/, wandb/, mlflow.db   the experiment trackers' files, where the `logger` key asks
                           for them (`avgzsl.tracking`)
      state.pt             full training state after the last finished epoch (for --resume)
      checkpoints/stage1_best.pt, checkpoints/stage2_final.pt
      eval/test.npz        nearest seen/unseen class per test video, labels, embeddings (for reports)
      results.json         test and val S/U/HM/ZSL/beta/AUSUC, best_epoch, stage2_epochs, curves
      timings.json         wall time per stage (kept out of results.json so results are reproducible)
      report.html, report/ the run's report and its PNGs (`avgzsl.reports.report.write_report`)
      .lock                while a command works on the folder: its pid, host and start time
                           (`avgzsl.runlock.run_lock`)

What a folder holds decides what a command does with it (`RunFolder.status()`): `results.json` means the
run finished (skip it), `state.pt` means it can resume, anything else is fresh (leftovers of a start that
died before its first saved epoch, removed with `RunFolder.clear()`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from . import __version__
from .config import RunConfig, read_yaml
from .errors import AvgzslError, DataError
from .io import atomic_write, write_errors, write_json, write_text
from .tracking import make_trackers

log = logging.getLogger("avgzsl.runfolder")

FRESH, RESUMABLE, FINISHED = "fresh", "resumable", "finished"  # RunFolder.status()


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device) -> dict:
    return {
        "avgzsl": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "device": str(device),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "git_commit": git_commit(),
        "argv": sys.argv,
    }


# ---- data provenance ------------------------------------------------------------------------------

def data_fingerprint(bench) -> str:
    """What identifies the data a run trains on: the reader's cache key (a hash of the split lists and of
    every source file's size and mtime; a native or cached copy keeps its source's key) when it made one,
    else a hash of the arrays themselves (in-memory benchmarks)."""
    key = bench.info.get("cache_key")
    if isinstance(key, str) and key:
        return key
    h = hashlib.blake2b(digest_size=32)
    h.update(json.dumps([bench.name, bench.feature_set, list(bench.class_names)]).encode())
    h.update(np.ascontiguousarray(bench.text))
    for stage in sorted(bench.splits):
        s = bench.splits[stage]
        h.update(stage.encode() + b"\0" + "\0".join(s.video_names).encode())
        for a in (s.labels, s.classes, s.audio, s.video, getattr(s, "audio_mask", None), getattr(s, "video_mask", None)):
            if a is not None:
                h.update(np.ascontiguousarray(a))
    return "content-" + h.hexdigest()


def data_where(info: dict) -> str:
    """The folder a benchmark was read from (a native folder's own path, else the dataset root)."""
    if info.get("source") == "native" and info.get("native_path"):
        return str(info["native_path"])
    return str(info.get("root", "?"))


# ---- the folder -----------------------------------------------------------------------------------

class RunFolder:
    """One run folder: its paths (relative names as class constants, full paths as properties), its
    status, and the writes the protocol makes to it."""

    CONFIG = "config.yaml"
    ENV = "env.json"
    LOG = "log.jsonl"
    STEPS = "steps.jsonl"
    STATE = "state.pt"
    CHECKPOINTS = "checkpoints"
    STAGE1_BEST = "checkpoints/stage1_best.pt"
    STAGE2_FINAL = "checkpoints/stage2_final.pt"
    EVAL = "eval"
    TEST_EVAL = "eval/test.npz"
    RESULTS = "results.json"
    TIMINGS = "timings.json"
    REPORT = "report.html"  # its PNGs go to report/ (a folder named after the HTML file's stem)
    LOCK = ".lock"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.trackers: list = []  # open_trackers() fills it for a run being written

    # ---- paths ----
    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def env_path(self) -> Path:
        return self.path / self.ENV

    @property
    def log_path(self) -> Path:
        return self.path / self.LOG

    @property
    def steps_path(self) -> Path:
        return self.path / self.STEPS

    @property
    def state_path(self) -> Path:
        return self.path / self.STATE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / self.CHECKPOINTS

    def checkpoint_path(self, name: str) -> Path:
        """checkpoints/<name> (name: a file name such as stage2_final.pt)."""
        return self.checkpoints_dir / name

    @property
    def stage1_best_path(self) -> Path:
        return self.path / self.STAGE1_BEST

    @property
    def stage2_final_path(self) -> Path:
        return self.path / self.STAGE2_FINAL

    def eval_path(self, name: str) -> Path:
        """eval/<name>.npz (`save_eval(name, ...)`; the protocol writes `test`)."""
        return self.path / self.EVAL / f"{name}.npz"

    @property
    def test_eval_path(self) -> Path:
        return self.path / self.TEST_EVAL

    @property
    def results_path(self) -> Path:
        return self.path / self.RESULTS

    @property
    def timings_path(self) -> Path:
        return self.path / self.TIMINGS

    @property
    def report_path(self) -> Path:
        return self.path / self.REPORT

    @property
    def lock_path(self) -> Path:
        return self.path / self.LOCK

    # ---- what the folder holds ----
    def status(self) -> str:
        """FINISHED (results.json: skip it), RESUMABLE (state.pt: continue it) or FRESH (nothing to keep:
        a missing or empty folder, or what a start that died before its first saved epoch left)."""
        if self.results_path.exists():
            return FINISHED
        if self.state_path.exists():
            return RESUMABLE
        return FRESH

    def read_results(self) -> dict:
        return json.loads(self.results_path.read_text())

    def clear(self) -> None:
        """Empty a FRESH folder (its run never finished an epoch: nothing to keep), keeping its lock."""
        for p in self.path.iterdir():
            if p.name == self.LOCK:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    # ---- the protocol's writes ----
    def start(self, cfg, bench, device, resume: bool = False, leakage: list[str] | None = None) -> None:
        if not resume and self.results_path.exists():
            raise AvgzslError(f"{self.path}: already holds a finished run; choose another --out")
        if not resume and self.state_path.exists():
            raise AvgzslError(f"{self.path}: holds an unfinished run; continue it with --resume {self.path}")
        with write_errors(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
            self.checkpoints_dir.mkdir(exist_ok=True)
        cfg_path = self.config_path
        if resume and cfg_path.exists():
            stored = RunConfig.from_dict(read_yaml(cfg_path), where=str(cfg_path)).to_dict()
            given = cfg.to_dict()
            for d in (stored, given):  # a permission / the trackers of this resume, not part of the run's config
                d.pop("allow_data_change", None)
                d.pop("logger", None)
            if stored != given:
                raise AvgzslError(f"{cfg_path}: the run was started with another config; "
                                  "resume it with its own config")
        else:  # on resume the stored config stays as it was written
            write_text(cfg_path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        old_env = self._read_env() if resume else {}
        data = {k: v for k, v in bench.info.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
        fingerprint = data_fingerprint(bench)
        changes = list(old_env.get("data_changes") or [])
        old_data = old_env.get("data") if isinstance(old_env.get("data"), dict) else {}
        old_fp = old_env.get("data_fingerprint") or old_data.get("cache_key")  # older run folders: the cache key
        if resume and old_fp and old_fp != fingerprint:
            was, now = data_where(old_data), data_where(data)
            if not cfg.allow_data_change:
                raise DataError(f"{self.env_path}: the run was trained on {was} (data fingerprint "
                                f"{old_fp[:16]}), not on {now} (fingerprint {fingerprint[:16]}); resume with "
                                f"--data {was}, or add --set allow_data_change=true to go on with the new data "
                                "(recorded in env.json)")
            stage, epoch = self._progress()
            changes.append({"from": old_fp, "to": fingerprint, "from_root": was, "to_root": now,
                            "at_stage": stage, "at_epoch": epoch, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            log.warning("%s: resuming on other data (%s instead of %s) from stage %d epoch %d, as "
                        "allow_data_change=true asks; recorded in env.json", self.path, now, was, stage, epoch + 1)
        env = environment(device)
        env["data"] = data
        env["data_fingerprint"] = fingerprint
        if changes:
            env["data_changes"] = changes
        env["leakage_overridden"] = leakage or []
        write_json(self.env_path, env)
        if resume:
            self._truncate_log()
        self.open_trackers(cfg)

    def _read_env(self) -> dict:
        try:
            env = json.loads(self.env_path.read_text())
        except (OSError, ValueError):
            return {}
        return env if isinstance(env, dict) else {}

    def _progress(self) -> tuple[int, int]:
        """(stage, epochs of that stage already trained) as the saved state says."""
        state = self.load_state()
        if state is None:
            return 1, 0
        if state["stage"] == 1:
            return 1, int(state["stage1"]["done"])
        return int(state["stage"]), int(state.get("done2", 0))

    def log_epoch(self, row: dict) -> None:
        self._append(self.log_path, row)
        self._tell_trackers("epoch", row)

    def log_steps(self, row: dict) -> None:
        """One epoch's per-step loss terms, to steps.jsonl and the trackers."""
        self._append(self.steps_path, row)
        self._tell_trackers("steps", row)

    @staticmethod
    def _append(path: Path, row: dict) -> None:
        old = path.read_text() if path.exists() else ""
        write_text(path, old + json.dumps(row) + "\n")

    def open_trackers(self, cfg) -> None:
        """The experiment trackers the config's `logger` asks for (tracking.py); they get copies of the rows."""
        self.close_trackers()
        try:
            self.trackers = make_trackers(cfg.logger, self.path, cfg.name or self.path.name, cfg.to_dict())
        except AvgzslError:
            raise
        except Exception as e:  # noqa: BLE001 (a tracker's own start-up: any error)
            log.warning("%s: experiment tracking off (%s: %s)", self.path, type(e).__name__, str(e)[:200])
            self.trackers = []

    def close_trackers(self) -> None:
        self._tell_trackers("close")
        self.trackers = []

    def _tell_trackers(self, what: str, *args) -> None:
        """A tracker that fails is dropped with a warning: the JSON-lines files are the record, a run never
        stops for its dashboard."""
        for t in list(self.trackers):
            try:
                getattr(t, what)(*args)
            except Exception as e:  # noqa: BLE001 (third-party code: any error)
                log.warning("%s: the %s tracker failed (%s: %s); it is dropped, the run goes on", self.path,
                            type(t).__name__, type(e).__name__, str(e)[:200])
                self.trackers.remove(t)

    def _truncate_log(self) -> None:
        """Drop log and step rows of epochs after the saved state (a kill between log and state)."""
        state = self.load_state()
        for path in (self.log_path, self.steps_path):
            if not path.exists():
                continue
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if state is None:
                keep = []
            else:
                done = {1: state["stage1"]["done"], 2: state.get("done2", 0) if state["stage"] == 2 else 0}
                keep = [r for r in rows if r["epoch"] < done[r["stage"]]]
            write_text(path, "".join(json.dumps(r) + "\n" for r in keep))

    def save_state(self, state: dict) -> None:
        atomic_write(self.state_path, lambda p: torch.save(state, p))

    def load_state(self) -> dict | None:
        if not self.state_path.exists():
            return None
        try:
            return torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise AvgzslError(f"{self.state_path}: unreadable training state ({type(e).__name__})") from None

    def save_eval(self, name: str, **arrays) -> None:
        arrays = {k: v for k, v in arrays.items() if v is not None}
        flat = {}
        for k, v in arrays.items():
            if hasattr(v, "seen_col"):  # a metrics.Nearest
                for f in ("seen_col", "seen_dist", "unseen_col", "unseen_dist"):
                    flat[f"nearest_{f}"] = getattr(v, f)
            else:
                flat[k] = np.asarray(v)
        if "class_names" in flat:
            flat["class_names"] = flat["class_names"].astype(str)  # no object arrays: loads without pickle
        def write(p: Path) -> None:
            with open(p, "wb") as f:  # closed here, so a failed flush raises instead of being lost at exit
                np.savez(f, **flat)
        atomic_write(self.eval_path(name), write)

    def finish(self, results: dict, timings: dict) -> None:
        write_json(self.timings_path, {k: round(v, 3) for k, v in timings.items()})
        write_json(self.results_path, results)
        if self.state_path.exists():
            self.state_path.unlink()  # the run is complete; results.json marks it
        self._tell_trackers("results", results)
        self.close_trackers()
