"""Print the Markdown tables of benchmarks/README.md from the JSON files in benchmarks/results/."""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name):
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def main():
    if (d := load("protocol")):
        print("### Protocol runs (synthetic, presets' epochs and batches)\n")
        print("| model | dataset | epochs (stage 1 + 2) | wall (s) | train samples/s | bare loop samples/s | ratio | peak RSS (MiB) |")
        print("|---|---|---|---|---|---|---|---|")
        for r in d["runs"]:
            print(f"| {r['model']} | {r['dataset']} | {r['epochs_stage1']} + {r['epochs_stage2']} | {r['wall_s']:.0f} | "
                  f"{r['train_samples_per_s']:.0f} | {r['bare_loop_samples_per_s']:.0f} | "
                  f"{r['ratio_bare_over_protocol']:.2f} | {r['peak_rss_mib']:.0f} |")
        print()
    if (d := load("evaluate")):
        print("### Evaluation (76 β values, S/U/HM/ZSL, AUSUC)\n")
        print("| videos × classes | seconds | peak RSS (MiB) |")
        print("|---|---|---|")
        for r in d["runs"]:
            print(f"| {r['n_videos']:,} × {r['n_classes']} | {r['seconds']:.3f} | {r['peak_rss_mib']:.0f} |")
        print()
    if (d := load("load")):
        print("### Loading (VGGSound-like, scale 1)\n")
        print(f"{d['first']['videos']:,} video entries, {d['source_mib']:.0f} MiB of pickles: first read "
              f"{d['first']['seconds']:.2f} s, cached read {d['cached']['seconds']:.2f} s.\n")
    if (d := load("scaling")):
        print("### Scaling (training epoch of fixed batches; evaluation of all validation videos)\n")
        print("| dataset | scale | train videos | train classes | ms / batch | eval µs / video | peak RSS (MiB) |")
        print("|---|---|---|---|---|---|---|")
        for r in d["by_size"] + d["by_classes"]:
            print(f"| {r['like']} | {r['scale']:g} | {r['train_videos']:,} | {r['train_classes']} | "
                  f"{r['train_ms_per_batch']:.1f} | {r['eval_us_per_video']:.1f} | {r['peak_rss_mib']:.0f} |")
        print(f"\n{d['summary']}\n")


if __name__ == "__main__":
    main()
