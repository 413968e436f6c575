"""A run killed with SIGKILL in stage 1 and again in stage 2 resumes to bit-identical results."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _procs import kill_when

SCRIPT = Path(__file__).parent / "_run_tiny.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def start(out: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), str(out), mode], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def rows(out: Path) -> list[dict]:
    p = out / "log.jsonl"
    try:
        return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
    except (OSError, ValueError):
        return []


@pytest.mark.slow
def test_kill_and_resume_is_bit_identical(tmp_path):
    ref = tmp_path / "ref"
    p = start(ref, "new")
    assert p.wait() == 0, p.communicate()[1].decode()[-2000:]

    out = tmp_path / "run"
    kill_when(start(out, "new"), lambda: len(rows(out)) >= 2)  # inside stage 1
    assert not (out / "results.json").exists()
    kill_when(start(out, "resume"), lambda: any(r["stage"] == 2 for r in rows(out)))  # inside stage 2
    assert not (out / "results.json").exists()
    p = start(out, "resume")
    assert p.wait() == 0, p.communicate()[1].decode()[-2000:]

    assert (out / "results.json").read_bytes() == (ref / "results.json").read_bytes()
    assert [(r["stage"], r["epoch"]) for r in rows(out)] == [(r["stage"], r["epoch"]) for r in rows(ref)]
    assert [r["loss"] for r in rows(out)] == [r["loss"] for r in rows(ref)]
