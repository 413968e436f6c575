"""Run the protocol on the tiny in-memory benchmark in its own process (for kill/resume tests)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_benchmark  # noqa: E402

from avgzsl.config import load_config  # noqa: E402
from avgzsl.protocol import run_protocol  # noqa: E402

if __name__ == "__main__":
    out, resume = sys.argv[1], sys.argv[2] == "resume"
    cfg = load_config(None, ["epochs=6", "n_batches=40", "bs=16", "lr=1e-3", "clipclap.hidden=64"])
    run_protocol(cfg, tiny_benchmark(), out, resume=resume)
