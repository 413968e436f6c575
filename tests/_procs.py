"""Kill a subprocess at a chosen moment (for the kill-and-resume tests)."""
import signal
import subprocess
import time

import pytest


def kill_when(proc: subprocess.Popen, cond, timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as `cond()` is true; fail the test if it ends or `timeout` passes first."""
    t = time.time()
    while proc.poll() is None and time.time() - t < timeout:
        if cond():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.01)
    ended = proc.poll() is not None
    if not ended:  # timed out: stop it rather than wait for the whole job to finish
        proc.kill()
    tail = " ".join(s.decode()[-1500:] for s in proc.communicate() if s)
    why = "the process ended before it could be killed" if ended else f"the condition did not hold within {timeout:g} s"
    pytest.fail(f"{why}: {tail}")
