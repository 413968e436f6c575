"""Write src/avgzsl/data/class_names.json: the class names of the three real benchmarks, for the v2 synthetic data.

    python scripts/make_class_names.py [--benchmarks ../shared/benchmarks] [--out src/avgzsl/data/class_names.json]

Reads only `<benchmarks>/<UCF|ActivityNet|VGGSound>/class-split/all_class.txt` (one name per line, in the
file's order) and writes {"ucf": [...], "activitynet": [...], "vggsound": [...]}. Nothing else of the
benchmark folders is read or copied. Fails when a list does not hold the benchmark's class count (UCF 101,
ActivityNet 200, VGGSound 309) or holds two names that differ only in case.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = {"ucf": ("UCF", 101), "activitynet": ("ActivityNet", 200), "vggsound": ("VGGSound", 309)}


def read_names(benchmarks: Path) -> dict[str, list[str]]:
    out = {}
    for key, (folder, count) in BENCHMARKS.items():
        path = benchmarks / folder / "class-split" / "all_class.txt"
        names = [s.strip() for s in path.read_text().splitlines() if s.strip()]
        if len(names) != count:
            raise SystemExit(f"{path}: {len(names)} names, expected {count}")
        if len({n.lower() for n in names}) != len(names):
            raise SystemExit(f"{path}: two names differ only in case")
        out[key] = names
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--benchmarks", type=Path, default=ROOT.parent / "shared" / "benchmarks")
    p.add_argument("--out", type=Path, default=ROOT / "src" / "avgzsl" / "data" / "class_names.json")
    a = p.parse_args(argv)
    names = read_names(a.benchmarks)
    a.out.write_text(json.dumps(names, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {a.out.name}: " + ", ".join(f"{k} {len(v)}" for k, v in names.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
