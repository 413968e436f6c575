"""First read of the benchmark layout (many pickles) and a cached read, VGGSound-like at scale 1.

    python benchmarks/load.py [--like vggsound] [--scale 1]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def single(like: str, scale: float, cache_dir: str, mode: str) -> dict:
    from avgzsl.data import load_benchmark
    root = _common.synthetic(like, scale)
    t = time.perf_counter()
    b = load_benchmark(root, cache_dir=cache_dir, cache=True)
    sec = time.perf_counter() - t
    return {"mode": mode, "seconds": round(sec, 3), "cache_hit": b.info.get("cache_hit"),
            "videos": int(sum(len(s) for s in b.splits.values())), "peak_rss_mib": round(_common.peak_rss_mib(), 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--like", default="vggsound")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--single", nargs=2, metavar=("CACHE_DIR", "MODE"))
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.single:
        print(json.dumps(single(a.like, a.scale, *a.single)))
        return
    root = _common.synthetic(a.like, a.scale)
    cache = Path(tempfile.mkdtemp(prefix="avgzsl-bench-cache-"))
    try:
        args = ["--like", a.like, "--scale", str(a.scale), "--single", str(cache)]
        first = _common.in_subprocess(__file__, *args, "first")
        cached = min((_common.in_subprocess(__file__, *args, "cached") for _ in range(3)), key=lambda r: r["seconds"])
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"{a.like} x{a.scale:g}: {first['videos']} video entries, {size / 2**20:.0f} MiB on disk; "
          f"first read {first['seconds']:.2f}s, cached read {cached['seconds']:.2f}s")
    print(f"wrote {_common.write('load', {'like': a.like, 'scale': a.scale, 'source_mib': round(size / 2**20, 1), 'first': first, 'cached': cached}, a.out)}")


if __name__ == "__main__":
    main()
