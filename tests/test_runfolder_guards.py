"""Run folders under stress: two processes on one folder, a holder that dies, leftovers of killed writers,
a real read-only mount and a real full disk (in a user namespace, where `unshare -rm` works), and file
modes. The one-line CLI checks per case are in tests/test_bad_data.py."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tiny_benchmark
from avgzsl.cli import main
from avgzsl.config import load_config
from avgzsl.errors import AvgzslError, LeakageError, RunFolderBusyError, WriteError
from avgzsl.io import atomic_write, clean_stale_tmp
from avgzsl.protocol import run_protocol
from avgzsl.runfolder import FINISHED, FRESH, RESUMABLE, RunFolder
from avgzsl.runlock import LOCK_NAME, run_lock

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = ["epochs=2", "n_batches=4", "bs=16", "clipclap.hidden=32"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
HOLD = ("import sys\nfrom avgzsl.runlock import run_lock\nwith run_lock(sys.argv[1]):\n"
        "    print('locked', flush=True)\n    sys.stdin.read()\n")


def test_status_decides_skip_resume_or_restart(tmp_path):
    """One rule for every command: results.json is finished (even beside a state.pt a kill left), state.pt
    resumable, anything else fresh; clear() empties a fresh folder but keeps its lock."""
    run = RunFolder(tmp_path / "run")
    assert run.status() == FRESH  # missing
    (run.path / "checkpoints").mkdir(parents=True)
    run.config_path.write_text("model: clipclap\n")
    (run.path / LOCK_NAME).write_text("{}")
    assert run.status() == FRESH
    run.clear()
    assert [p.name for p in run.path.iterdir()] == [LOCK_NAME]
    run.state_path.write_bytes(b"state")
    assert run.status() == RESUMABLE
    run.results_path.write_text("{}")
    assert run.status() == FINISHED and run.read_results() == {}
    assert run.stage2_final_path == run.path / "checkpoints" / "stage2_final.pt"
    assert run.test_eval_path == run.path / "eval" / "test.npz" == run.eval_path("test")


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("avgzsl: error:")]
    assert len(lines) == 1, err
    return lines[0]


class Holder:
    """Another process that holds a folder's lock until released."""

    def __init__(self, folder: Path):
        self.p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        assert self.p.stdout.readline() == "locked\n", self.p.stderr.read()
        self.pid = self.p.pid

    def release(self) -> None:
        self.p.stdin.close()
        assert self.p.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """The tiny benchmark as a native folder (usable as --data, --features and --classes) and a finished run."""
    from avgzsl.data.native import write_native
    base = tmp_path_factory.mktemp("tiny")
    bench = tiny_benchmark()
    native = write_native(bench, base / "tiny_native")
    run = base / "run"
    run_protocol(load_config(None, TINY), bench, run)
    return {"native": native, "run": run, "base": base}


def test_lock_names_its_holder_and_is_released_on_exit_and_on_errors(tmp_path):
    folder = tmp_path / "run"
    h = Holder(folder)
    with pytest.raises(RunFolderBusyError) as e:
        with run_lock(folder):
            pass
    msg = str(e.value)
    assert msg.startswith(f"{folder} is in use by pid {h.pid} (started 20"), msg
    assert msg.endswith(f"; wait for it or remove {folder / LOCK_NAME} if that process is gone"), msg
    info = json.loads((folder / LOCK_NAME).read_text())
    assert info["pid"] == h.pid and info["host"] and info["started"]
    h.release()
    assert not (folder / LOCK_NAME).exists()
    with pytest.raises(ZeroDivisionError):
        with run_lock(folder):
            with run_lock(folder):  # re-entrant in one thread (run_protocol inside a locked command)
                assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
            1 / 0
    assert not (folder / LOCK_NAME).exists()
    Holder(folder).release()  # free for the next process


def test_a_dead_holder_never_blocks_the_folder(tmp_path):
    """flock dies with its process: a SIGKILLed holder leaves a lock file, and the next process takes over."""
    folder = tmp_path / "run"
    h = Holder(folder)
    h.p.send_signal(signal.SIGKILL)
    h.p.wait()
    assert json.loads((folder / LOCK_NAME).read_text())["pid"] == h.pid  # left behind, stale
    with run_lock(folder):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (folder / LOCK_NAME).exists()


def test_resume_while_the_run_trains_is_refused(tiny_data, tmp_path, capsys):
    """Two real `avgzsl train` processes: the second (a --resume of the same folder) stops at once."""
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "avgzsl.cli", "train", "--data", str(tiny_data["native"]),
                              "--out", str(run), "--quiet", "--set", "epochs=400", "--set", "n_batches=20",
                              "--set", "bs=16", "--set", "clipclap.hidden=32"],
                             env={**ENV, "AVGZSL_CACHE": str(tmp_path / "cache")},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        t = time.time()
        while not (run / "state.pt").exists() and first.poll() is None and time.time() - t < 120:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        log_before = (run / "log.jsonl").read_text()
        code = main(["train", "--resume", str(run), "--quiet"])
        line = one_line(capsys)
        assert code == 2 and f"{run} is in use by pid {first.pid} (started " in line, line
        assert (run / "log.jsonl").read_text().startswith(log_before)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the killer's state stays resumable; its lock is free; the next command cleans its temporaries
    (run / ".state.pt.99999999-0123abcd.tmp").write_bytes(b"half")
    assert main(["report", str(run)]) == 0
    assert not list(run.rglob(".*.tmp"))


def test_eval_and_report_refuse_a_folder_in_use(tiny_data, tmp_path, capsys):
    h = Holder(tiny_data["run"])
    try:
        for argv in (["eval", str(tiny_data["run"]), "--data", str(tiny_data["native"])],
                     ["report", str(tiny_data["run"]), "--out", str(tmp_path / "r.html")]):
            assert main(argv) == 2
            assert f"is in use by pid {h.pid}" in one_line(capsys)
    finally:
        h.release()
    assert not (tmp_path / "r.html").exists()


def test_reproduce_locks_its_output_root_and_each_run_folder(tmp_path):
    from avgzsl.reproduce import Experiment, reproduce, run_experiment, variant
    out = tmp_path / "repro"
    exp = Experiment("ucf", variant("mft"), 0, tmp_path / "nowhere", out / "ucf" / "mft" / "seed0")
    h = Holder(exp.out)
    try:
        with pytest.raises(RunFolderBusyError, match=f"is in use by pid {h.pid}"):
            run_experiment(exp)
        assert sorted(p.name for p in exp.out.iterdir()) == [LOCK_NAME]  # not emptied under its holder
    finally:
        h.release()
    (tmp_path / "data" / "UCF").mkdir(parents=True)
    h = Holder(out)
    try:
        with pytest.raises(RunFolderBusyError, match=f"{out} is in use by pid {h.pid}"):
            reproduce(["ucf"], [3], [0], out, data_root=tmp_path / "data", progress=False)
    finally:
        h.release()


def test_a_start_that_fails_leaves_no_folder(tmp_path):
    bench = tiny_benchmark()
    s = bench.splits
    s["stage_1_val_unseen"] = s["stage_1_train"]  # trains on its unseen validation classes
    with pytest.raises(LeakageError):
        run_protocol(load_config(None, TINY), bench, tmp_path / "runs" / "r")
    assert not (tmp_path / "runs").exists()


def test_stale_temporaries_go_but_a_live_writers_stays(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "sub").mkdir()
        dead = [tmp_path / ".a.txt.k2j3h_x.tmp", tmp_path / "sub" / ".b.pt.99999999-0123abcd.tmp"]
        live = tmp_path / f".c.csv.{sleeper.pid}-0123abcd.tmp"
        keep = [tmp_path / "results.json", tmp_path / ".hidden", live]
        for p in dead + keep:
            p.write_text("x")
        assert sorted(clean_stale_tmp(tmp_path)) == sorted(dead)
        assert all(p.exists() for p in keep)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_torch_full_disk_is_named_no_space(tmp_path, monkeypatch):
    """torch.save on a full disk says only 'unexpected pos N vs M' (here: a real one, from /dev/full)."""
    import shutil
    import torch
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=0))  # as the partial file left it
    with pytest.raises(WriteError) as e:
        atomic_write(tmp_path / "state.pt", lambda p: torch.save({"x": torch.zeros(1000)}, "/dev/full"))
    assert str(e.value) == f"{tmp_path / 'state.pt'}: cannot write (no space left on device)"
    assert isinstance(e.value, OSError) and isinstance(e.value, AvgzslError)
    assert list(tmp_path.iterdir()) == []


def test_any_other_file_error_is_one_line(monkeypatch, capsys):
    import avgzsl.cli as cli

    def boom(args):
        raise OSError(errno.EIO, "Input/output error", "/some/file.npy")
    monkeypatch.setattr(cli, "cmd_models", boom)
    assert main(["models"]) == 2
    assert one_line(capsys) == "avgzsl: error: /some/file.npy: input/output error"


def test_run_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        run_protocol(load_config(None, TINY), tiny_benchmark(), tmp_path / "run")
    finally:
        os.umask(old)
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777 for p in (tmp_path / "run").rglob("*")}
    assert modes and {m for p, m in modes.items() if not Path(tmp_path, p).is_dir()} == {0o640}, modes
    assert {m for p, m in modes.items() if Path(tmp_path, p).is_dir()} == {0o750}, modes


# ---- a real read-only mount and a real full disk ------------------------------------------------------

def _namespaces() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


MOUNTS = {
    "read_only": 'mount --bind "$M" "$M" && mount -o remount,ro,bind "$M"',
    "full": 'mount -t tmpfs -o size=20k none "$M" && { [ -z "$FILL" ] || dd if=/dev/zero of="$M/.fill" bs=4k '
            '2>/dev/null; true; }',
}


def _in_namespace(kind: str, mnt: Path, argv: list[str], fill: bool, tmp_path: Path):
    """Run `avgzsl ARGV` with `mnt` read-only or on a 20 KiB tmpfs (filled first with `fill`) in a private
    mount namespace; returns (exit code, stderr, what the command left in `mnt`)."""
    script = (f'{MOUNTS[kind]} || exit 99; "$PY" -m avgzsl.cli "$@"; rc=$?; '
              'ls -A "$M" | grep -v "^.fill$" > "$LEFT"; exit $rc')
    env = {**ENV, "M": str(mnt), "PY": sys.executable, "FILL": "1" if fill else "", "LEFT": str(tmp_path / "left"),
           "AVGZSL_CACHE": str(tmp_path / "cache")}
    p = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *argv], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode != 99, p.stderr
    return p.returncode, p.stderr, (tmp_path / "left").read_text().split()


@pytest.mark.skipif(not _namespaces(), reason="needs `unshare -rm` (user and mount namespaces)")
@pytest.mark.parametrize("kind,command,fill", [
    ("read_only", "train", False), ("read_only", "convert", False), ("read_only", "predict", False),
    ("full", "train", False), ("full", "convert", True), ("full", "predict", True)])
def test_real_read_only_mount_and_full_disk(kind, command, fill, tiny_data, tmp_path):
    """Case 9 for real: train, convert and predict --out on a read-only mount and on a full tmpfs. A tmpfs
    of 20 KiB holds the run's first small files, so train's checkpoint is where torch.save hits the full
    disk ('unexpected pos')."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    target = mnt / {"train": "run", "convert": "native", "predict": "pred.csv"}[command]
    native, run = str(tiny_data["native"]), str(tiny_data["run"])
    argv = {"train": ["train", "--data", native, "--quiet", *[a for s in TINY for a in ("--set", s)]],
            "convert": ["convert", native],  # a native folder converts too (read, then written again)
            "predict": ["predict", "--run", run, "--features", native, "--classes", native, "--quiet"]}[command]
    code, err, left = _in_namespace(kind, mnt, argv + ["--out", str(target)], fill, tmp_path)
    cause = {"read_only": "read-only file system", "full": "no space left on device"}[kind]
    lines = [x for x in err.splitlines() if x.startswith("avgzsl: error:")]
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    assert str(target) in lines[0] and f"cannot write ({cause})" in lines[0], lines[0]
    if command == "train" and kind == "full":
        assert "checkpoints" in lines[0] or "state.pt" in lines[0], lines[0]  # torch.save's failure, named
    assert left == [], left  # the failed start removed what it made


@pytest.mark.skipif(not _namespaces(), reason="needs `unshare -rm` (user and mount namespaces)")
def test_eval_of_a_read_only_run_folder_still_works(tiny_data, tmp_path):
    """The lock is not needed where nobody can write: eval of an archived, read-only run runs."""
    import shutil
    mnt = tmp_path / "mnt"
    shutil.copytree(tiny_data["run"], mnt)
    code, err, left = _in_namespace("read_only", mnt, ["eval", str(mnt), "--data", str(tiny_data["native"])],
                                    False, tmp_path)
    assert code == 0, err
    assert LOCK_NAME not in left
