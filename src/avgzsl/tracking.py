"""Experiment trackers: TensorBoard, Weights & Biases, MLflow; one interface, one small adapter each.

The run folder's JSON-lines files stay the record (``log.jsonl`` per epoch, ``steps.jsonl`` per step,
``results.json``); a tracker receives copies of the same rows from `RunFolder` (runfolder.py), never from
the protocol. Chosen by the run config's ``logger`` key (``--set logger=...``, CLI ``--logger``): a
comma-separated list of ``tensorboard``, ``wandb``, ``mlflow``; ``auto`` (the default) is ``tensorboard``
when the ``tensorboard`` package is installed and nothing otherwise; ``none`` turns tracking off.

What each gets (tags as TensorBoard shows them; W&B and MLflow keys are the same with ``/``):

* per step: ``stage<k>/step/<loss term>`` (and ``total``), step = the step count within the stage;
* per epoch: ``stage<k>/loss/<term>``, ``stage<k>/lr``, ``stage<k>/val/<S|U|HM|ZSL|beta|AUSUC>``
  (stage 1 only: stage 2 has no validation), step = epoch (0-based);
* at the end: ``test/<metric>`` and the test calibration curve ``test/curve/<S|U|HM>`` over the β grid
  (step = the grid index; the β values are ``test/curve/beta``).

Where: TensorBoard event files in ``RUN_DIR/tensorboard/`` (``tensorboard --logdir runs/`` shows every
run); W&B in offline mode unless ``WANDB_MODE`` says otherwise, files under ``RUN_DIR/wandb/``
(``wandb sync`` uploads them later); MLflow to ``$MLFLOW_TRACKING_URI``, else a local SQLite store
``RUN_DIR/mlflow.db`` (``mlflow ui --backend-store-uri sqlite:///RUN_DIR/mlflow.db``). Each adapter's package is an optional extra (``pip install tensorboard`` /
``wandb`` / ``mlflow``); asking for one that is missing is a one-line ConfigError.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import ConfigError, did_you_mean
from .settings import flatten

__all__ = ["Tracker", "TRACKERS", "tracker_names", "make_trackers", "epoch_scalars", "step_scalars",
           "result_scalars"]

METRIC_TAGS = {"seen": "S", "unseen": "U", "hm": "HM", "zsl": "ZSL", "beta": "beta", "ausuc": "AUSUC"}


# ---- what is logged: plain functions from the run folder's rows to {tag: value} ------------------

def epoch_scalars(row: dict) -> dict[str, float]:
    """{tag: value} of one log.jsonl row."""
    k = f"stage{row['stage']}"
    out = {f"{k}/loss/{name}": float(v) for name, v in (row.get("loss") or {}).items()}
    if row.get("lr") is not None:
        out[f"{k}/lr"] = float(row["lr"])
    for m, tag in METRIC_TAGS.items():
        v = (row.get("val") or {}).get(m)
        if isinstance(v, (int, float)):
            out[f"{k}/val/{tag}"] = float(v)
    return out


def step_scalars(row: dict) -> list[tuple[int, dict[str, float]]]:
    """[(step, {tag: value})] of one steps.jsonl row (one epoch's steps)."""
    k, first, terms = f"stage{row['stage']}", int(row["first_step"]), row["terms"]
    n = len(next(iter(terms.values()), []))
    return [(first + i, {f"{k}/step/{name}": float(v[i]) for name, v in terms.items()}) for i in range(n)]


def result_scalars(results: dict) -> tuple[dict[str, float], list[tuple[int, dict[str, float]]]]:
    """({test/<metric>: value}, [(grid index, {test/curve/...})]) of results.json."""
    test = results.get("test") or {}
    final = {f"test/{tag}": float(test[m]) for m, tag in METRIC_TAGS.items() if isinstance(test.get(m), (int, float))}
    grid = (results.get("curves") or {}).get("test_grid") or {}
    curve = []
    for i, beta in enumerate(grid.get("beta") or []):
        curve.append((i, {"test/curve/beta": float(beta), "test/curve/S": float(grid["seen"][i]),
                          "test/curve/U": float(grid["unseen"][i]), "test/curve/HM": float(grid["hm"][i])}))
    return final, curve


# ---- the interface and its adapters ----------------------------------------------------------------

class Tracker:
    """Receives scalars; `close` flushes. Adapters override `scalars` (and `open`/`close` as needed)."""

    package = ""

    def __init__(self, run_dir: Path, run_name: str, config: dict):
        self.run_dir, self.run_name, self.config = Path(run_dir), run_name, config

    def scalars(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # the run folder's three kinds of rows
    def epoch(self, row: dict) -> None:
        self.scalars(epoch_scalars(row), int(row["epoch"]))

    def steps(self, row: dict) -> None:
        for step, values in step_scalars(row):
            self.scalars(values, step)

    def results(self, results: dict) -> None:
        final, curve = result_scalars(results)
        self.scalars(final, 0)
        for i, values in curve:
            self.scalars(values, i)


class TensorBoardTracker(Tracker):
    package = "tensorboard"

    def __init__(self, run_dir, run_name, config):
        super().__init__(run_dir, run_name, config)
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), flush_secs=10)

    def scalars(self, values, step):
        for tag, v in values.items():
            self.writer.add_scalar(tag, v, step)

    def close(self):
        self.writer.flush()
        self.writer.close()


class WandbTracker(Tracker):
    package = "wandb"

    def __init__(self, run_dir, run_name, config):
        super().__init__(run_dir, run_name, config)
        import wandb
        os.environ.setdefault("WANDB_MODE", "offline")  # nothing leaves the machine unless the user says so
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(dir=str(self.run_dir), name=run_name, config=config, reinit="create_new")

    def scalars(self, values, step):
        # W&B's own step must grow within a run; our steps restart per stage and per kind, so each tag
        # family ("stage1/val", "stage1/step", ...) is logged in one row with its own "<family>/_step"
        families: dict[str, dict] = {}
        for tag, v in values.items():
            families.setdefault(tag.rsplit("/", 1)[0], {})[tag] = v
        for family, vals in families.items():
            self.run.log({**vals, f"{family}/_step": step})

    def close(self):
        self.run.finish()


class MLflowTracker(Tracker):
    package = "mlflow"

    def __init__(self, run_dir, run_name, config):
        super().__init__(run_dir, run_name, config)
        import mlflow
        self.mlflow = mlflow
        # MLflow 3 keeps its file store in maintenance mode: a local SQLite file is its own default now
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(self.run_dir / 'mlflow.db').resolve()}"
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name("avgzsl")
        exp_id = exp.experiment_id if exp else self.client.create_experiment("avgzsl")
        self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        for k, v in flatten(config).items():
            self.client.log_param(self.run_id, k, str(v)[:500])

    def scalars(self, values, step):
        for tag, v in values.items():
            self.client.log_metric(self.run_id, tag, v, step=step)

    def close(self):
        self.client.set_terminated(self.run_id)


TRACKERS: dict[str, type[Tracker]] = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker,
                                      "mlflow": MLflowTracker}


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def tracker_names(spec: str) -> list[str]:
    """The trackers a ``logger`` value asks for (``auto``: tensorboard if installed); unknown names and
    missing packages are one-line ConfigErrors."""
    names = [n.strip() for n in str(spec).split(",") if n.strip()]
    if names in ([], ["none"]):
        return []
    if names == ["auto"]:
        return ["tensorboard"] if _installed("tensorboard") else []
    for n in names:
        if n not in TRACKERS:
            raise ConfigError(f"logger={spec!r}: unknown logger {n!r}{did_you_mean(n, TRACKERS)}; expected auto, "
                              f"none or a comma-separated list of {', '.join(TRACKERS)}")
        if not _installed(TRACKERS[n].package):
            raise ConfigError(f"logger={n}: the {TRACKERS[n].package!r} package is not installed "
                              f"(pip install {TRACKERS[n].package}), or set logger=none")
    return list(dict.fromkeys(names))


def make_trackers(spec: str, run_dir: str | Path, run_name: str, config: dict) -> list[Tracker]:
    return [TRACKERS[n](Path(run_dir), run_name, config) for n in tracker_names(spec)]
