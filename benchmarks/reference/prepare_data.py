"""Make one dataset root that both the reference (ClipClap-GZSL) and avgzsl read, from an avgzsl-layout root.

    python benchmarks/reference/prepare_data.py --src SYNTH_ROOT --out ROOT [--pairing-correct]

Two changes, both recorded in ROOT/reference_prep.json:

1. fps (always). `avgzsl synth` stores `fps` in every feature pickle as one number; the reference's loader
   (dataset.py, get_data_by_modality) indexes it per video and stops with "'float' object is not
   subscriptable". The copy stores it as a list with one entry per video (the form of the real release,
   which our reader also accepts). Features, names, splits and text are copied unchanged.
2. --pairing-correct: the reference gives class id i (the i-th name of all_class.txt sorted case-sensitively)
   the i-th vector of each text dict sorted by key, with the CLIP and WavCaps dicts sorted separately and
   concatenated by position. On the synthetic names these orders disagree (93 of 101 UCF-like classes get
   another class's text). This option renames the text keys so that every order agrees: the class of rank r in
   the case-sensitive sort of all_class.txt gets the keys "kNNN <old key>" (NNN = r) in both text dicts, and the
   `manual` / `clip_class_name` columns of both class-name tables are renamed the same way, so that our
   `by_name` pairing still finds every class. The vectors do not change; only which class the reference
   gives them to does (it then matches ours).

The output is small (about 11 MB at scale 0.25) and is written afresh (an existing --out is refused unless
--overwrite).
"""
from __future__ import annotations

import argparse
import csv
import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    with path.open(newline="") as f:
        header = next(csv.reader(f))
    return header, rows


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)


def fix_fps(root: Path) -> int:
    """Every feature pickle's scalar fps -> one value per video. Returns the number of files changed."""
    changed = 0
    for path in sorted(root.glob("features/*/*/*/*.pkl")):
        with path.open("rb") as f:
            obj = pickle.load(f)  # our own synthetic files
        fps = obj.get("fps")
        if fps is None or np.ndim(fps) == 0:
            n = len(obj["video_names"])
            obj["fps"] = [float(25.0 if fps is None else fps)] * n
            with path.open("wb") as f:
                pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
            changed += 1
    return changed


def pairing_correct(root: Path, ds: str) -> dict:
    """Rename text keys (and the table columns naming them) so that sorted key order = sorted class order."""
    split_dir = root / "class-split"
    all_class = [ln.strip() for ln in (split_dir / "all_class.txt").read_text().splitlines() if ln.strip()]
    rank = {name.lower(): r for r, name in enumerate(sorted(all_class))}  # the reference's class ids
    text_dir = next(root.glob("features/*/text"))
    w2v_csv, clip_csv = split_dir / f"{ds}_w2v_class_names.csv", split_dir / f"{ds}_clip_class_names.csv"
    w2v_header, w2v_rows = _read_csv(w2v_csv)
    clip_header, clip_rows = _read_csv(clip_csv)
    manual_of = {r["original"].lower(): r["manual"] for r in w2v_rows}
    clip_of = {r["original"].lower(): r["clip_class_name"] for r in clip_rows}
    renames = {}
    for fname, key_of in ((f"word_embeddings_{ds}_normed.npy", clip_of),
                          (f"wavcaps_word_embeddings_{ds}_normed.npy", manual_of)):
        path = text_dir / fname
        table = np.load(path, allow_pickle=True).item()
        new_key = {key_of[low]: f"k{r:03d} {key_of[low]}" for low, r in rank.items()}
        missing = sorted(set(table) - set(new_key))
        if missing:
            raise SystemExit(f"{path}: keys of no class in all_class.txt: {missing[:3]}")
        np.save(path, {new_key[k]: v for k, v in table.items()}, allow_pickle=True)
        renames[fname] = len(table)
    for r in w2v_rows:
        r["manual"] = f"k{rank[r['original'].lower()]:03d} {r['manual']}"
    for r in clip_rows:
        pre = f"k{rank[r['original'].lower()]:03d} "
        r["manual"], r["clip_class_name"] = pre + r["manual"], pre + r["clip_class_name"]
    _write_csv(w2v_csv, w2v_header, w2v_rows)
    _write_csv(clip_csv, clip_header, clip_rows)
    return {"renamed_keys": renames, "classes": len(all_class)}


def check_pairing(root: Path, ds: str) -> dict:
    """How many classes the reference's position pairing gives another class's text, per text dict."""
    split_dir = root / "class-split"
    all_class = [ln.strip() for ln in (split_dir / "all_class.txt").read_text().splitlines() if ln.strip()]
    _, w2v_rows = _read_csv(split_dir / f"{ds}_w2v_class_names.csv")
    _, clip_rows = _read_csv(split_dir / f"{ds}_clip_class_names.csv")
    manual_of = {r["original"].lower(): r["manual"] for r in w2v_rows}
    clip_of = {r["original"].lower(): r["clip_class_name"] for r in clip_rows}
    text_dir = next(root.glob("features/*/text"))
    out = {}
    for fname, key_of in ((f"word_embeddings_{ds}_normed.npy", clip_of),
                          (f"wavcaps_word_embeddings_{ds}_normed.npy", manual_of)):
        keys = sorted(np.load(text_dir / fname, allow_pickle=True).item())
        wrong = [name for i, name in enumerate(sorted(all_class)) if i >= len(keys) or keys[i] != key_of[name.lower()]]
        out[fname] = {"classes_with_another_class_text": len(wrong), "of": len(all_class)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", required=True, type=Path, help="an avgzsl-layout root (e.g. from `avgzsl synth`)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--dataset", default="ucf", help="the file-name tag of the text and table files (ucf)")
    ap.add_argument("--pairing-correct", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    if a.out.exists():
        if not a.overwrite:
            print(f"{a.out} exists (use --overwrite)", file=sys.stderr)
            return 2
        shutil.rmtree(a.out)
    shutil.copytree(a.src, a.out, ignore=shutil.ignore_patterns("_features_processed"))
    info = {"src": a.src.name, "fps_files_changed": fix_fps(a.out), "pairing_correct": a.pairing_correct,
            "pairing_before": check_pairing(a.out, a.dataset)}
    if a.pairing_correct:
        info["renamed"] = pairing_correct(a.out, a.dataset)
        info["pairing_after"] = check_pairing(a.out, a.dataset)
    (a.out / "reference_prep.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
