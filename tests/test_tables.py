"""The paper-table Markdown: mean ± std over seeds beside the paper, "1 seed" instead of a made-up ± 0.00,
and Table 2's rows whose paper numbers come from other features marked as such."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from avgzsl.reports import paper
from avgzsl.reports.tables import OTHER_FEATURES, build_table, format_mean_std, write_tables


@dataclass
class _Variant:
    key: str


@dataclass
class _Exp:
    dataset: str
    variant: _Variant
    seed: int
    out: Path
    done: bool = True


def _exp(tmp: Path, key: str, seed: int, hm: float, ds: str = "ucf") -> _Exp:
    out = tmp / f"{ds}-{key}-{seed}"
    out.mkdir()
    test = {"seen": hm + 0.1, "unseen": hm - 0.1, "hm": hm, "zsl": hm}
    (out / "results.json").write_text(json.dumps({"test": test, "text_alignment": "by_name", "split": "cls_split",
                                                  "feature_set": "clipclap"}))
    return _Exp(ds, _Variant(key), seed, out)


def test_format_mean_std():
    assert format_mean_std(12.345, 0.0, 1) == "12.35 (1 seed)"
    assert format_mean_std(12.345, 1.5, 3, 3) == "12.35 ± 1.50"
    assert format_mean_std(12.345, 1.5, 2, 3) == "12.35 ± 1.50 (n=2)"


def _row(rows, start):
    return next(i for i, r in enumerate(rows) if r[0].startswith(start))


def test_table2_marks_other_feature_rows_and_single_seeds(tmp_path):
    exps = [_exp(tmp_path, "clipclap", s, hm) for s, hm in ((0, 0.50), (1, 0.54), (2, 0.52))]
    exps.append(_exp(tmp_path, "devise", 0, 0.30))  # one seed only
    header, rows, records = build_table(2, exps, ["ucf"])
    i = _row(rows, "**ClipClap-GZSL**")
    assert rows[i][0] == "**ClipClap-GZSL**† (ours)" and rows[i + 1][0] == "  paper (Δ = ours − paper)"
    hm_col = header.index("UCF-GZSL HM")
    assert rows[i][hm_col] == "52.00 ± 2.00"  # mean 52, sample std of 50/54/52 = 2
    assert rows[i + 1][hm_col] == f"{paper.TABLE2['ClipClap-GZSL'][2]['ucf']['hm']:.2f} ({52 - 55.97:+.2f})"
    j = _row(rows, "**DeViSE**")
    assert rows[j][0] == "**DeViSE** (ours)" and rows[j + 1][0] == "  paper, other features (Δ = ours − paper)"
    assert rows[j][hm_col] == "30.00 (1 seed)"
    assert "± 0.00" not in "\n".join(" ".join(r) for r in rows)
    notes = {r["method"]: r["note"] for r in records if r["metric"] == "hm"}
    assert notes["DeViSE"] == notes["TCAF"] == OTHER_FEATURES  # not † rows
    assert notes["ClipClap-GZSL"] == notes["AVCA"] == ""  # † rows


def test_written_markdown_explains_the_dagger_only_with_table2(tmp_path):
    exps = [_exp(tmp_path, "mft", s, 0.6) for s in (0, 1)]
    md = write_tables(exps, [2], tmp_path / "t2", synthetic=True)[0].read_text()
    assert "† marks the rows the paper ran on the same CLIP/CLAP features" in md
    (tmp_path / "t3").mkdir()
    md3 = write_tables(exps, [3], tmp_path / "t3", synthetic=True)[0].read_text()
    assert "† marks" not in md3
