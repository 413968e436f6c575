"""The run folder: resolved config, JSON-lines epoch log, checkpoints, training state, results.

    RUN_DIR/
      config.yaml          resolved run config (every default written out)
      env.json             versions, device, threads, git commit, data provenance, leakage overrides
      log.jsonl            one JSON object per epoch (loss terms, lr, val S/U/HM/ZSL, beta)
      state.pt             full training state after the last finished epoch (for --resume)
      checkpoints/stage1_best.pt, checkpoints/stage2_final.pt
      eval/test.npz        nearest seen/unseen class per test video, labels, embeddings (for reports)
      results.json         test and val S/U/HM/ZSL/beta/AUSUC, best_epoch, stage2_epochs, curves
      timings.json         wall time per stage (kept out of results.json so results are reproducible)
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from .errors import AvgzslError
from .io import atomic_write, write_json, write_text


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device) -> dict:
    from . import __version__
    return {
        "avgzsl": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "device": str(device),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "git_commit": git_commit(),
        "argv": sys.argv,
    }


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def state_path(self) -> Path:
        return self.path / "state.pt"

    def start(self, cfg, bench, device, resume: bool = False, leakage: list[str] | None = None) -> None:
        if not resume and (self.path / "results.json").exists():
            raise AvgzslError(f"{self.path}: already holds a finished run; choose another --out")
        if not resume and self.state_path.exists():
            raise AvgzslError(f"{self.path}: holds an unfinished run; continue it with --resume {self.path}")
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "checkpoints").mkdir(exist_ok=True)
        cfg_text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
        if resume and (self.path / "config.yaml").exists():
            if yaml.safe_load((self.path / "config.yaml").read_text()) != cfg.to_dict():
                raise AvgzslError(f"{self.path / 'config.yaml'}: the run was started with another config; "
                                  "resume it with its own config")
        write_text(self.path / "config.yaml", cfg_text)
        env = environment(device)
        env["data"] = {k: v for k, v in bench.info.items() if isinstance(v, (str, int, float, bool, list, type(None)))}
        env["leakage_overridden"] = leakage or []
        write_json(self.path / "env.json", env)
        if resume:
            self._truncate_log()

    def log_epoch(self, row: dict) -> None:
        path = self.path / "log.jsonl"
        old = path.read_text() if path.exists() else ""
        write_text(path, old + json.dumps(row) + "\n")

    def _truncate_log(self) -> None:
        """Drop log rows of epochs after the saved state (a kill between log and state)."""
        path = self.path / "log.jsonl"
        state = self.load_state()
        if not path.exists():
            return
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
        atomic_write(self.path / "eval" / f"{name}.npz", lambda p: np.savez(open(p, "wb"), **flat))

    def finish(self, results: dict, timings: dict) -> None:
        write_json(self.path / "timings.json", {k: round(v, 3) for k, v in timings.items()})
        write_json(self.path / "results.json", results)
        if self.state_path.exists():
            self.state_path.unlink()  # the run is complete; results.json marks it
