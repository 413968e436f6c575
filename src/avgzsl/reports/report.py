"""One run's report: a self-contained `report.html` (figures embedded as base64 PNG) plus the PNGs.

    write_report(run_dir)             -> RUN_DIR/report.html, RUN_DIR/report/*.png
    write_report(run_dir, out=P)      -> P (an .html path), PNGs in P's folder under P's stem

Sections (HTML ids): `headline`, `training`, `calibration`, `modalities`, `class-accuracy`, `confusions`,
`embedding-map`; the HTML building blocks are `html.py`. Everything is read from the run folder (docs/protocol.md); numbers are recomputed with `avgzsl.metrics`
(never a second implementation). A missing optional file skips the sections that need it with a note;
a folder that is not a run folder raises `AvgzslError` naming it. See docs/reports.md.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import AvgzslError
from ..io import write_errors, write_text
from ..metrics import seen_unseen_curve
from ..runfolder import RunFolder
from ..runlock import run_lock
from . import class_plots, plots
from .confusion import plot_confusion
from .html import CSS, esc as _e, img as _img, kv_table as _kv_table, note as _note, pct as _pct
from .runfiles import RunFiles, TestAnalysis, analyse_test, confused_pairs, load_run

log = logging.getLogger("avgzsl.reports")

SECTIONS = {  # id -> heading
    "headline": "Headline",
    "training": "Training curves",
    "calibration": "Calibration and the seen–unseen curve",
    "modalities": "Modality breakdown",
    "class-accuracy": "Per-class accuracy",
    "confusions": "Most confused class pairs",
    "embedding-map": "Embedding map",
}
PNG_NAMES = ("training.png", "steps.png", "calibration.png", "seen_unseen.png", "modalities.png",
             "class_accuracy.png", "confusion.png", "embedding_map.png")


def _missing(run: RunFiles, name: str, default: str = "missing") -> str:
    """`name: why it was not used` (name: a run folder file, as in RunFiles.notes)."""
    return f"{name}: {run.notes.get(name, default)}"


def _section(sid: str, body: str) -> str:
    return f'<section id="{sid}">\n<h2>{_e(SECTIONS[sid])}</h2>\n{body}\n</section>\n'


# ------------------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------------------
def _headline(run: RunFiles, an: TestAnalysis | None) -> str:
    r = run.results
    parts = []
    if r is None:
        parts.append(_note(f"{_missing(run, RunFolder.RESULTS)} — the run has not "
                           "finished; only the training curves can be drawn."))
    else:
        cols = ("seen", "unseen", "hm", "zsl")
        head = "<tr><th></th><th>S</th><th>U</th><th>HM</th><th>ZSL</th><th>β</th><th>AUSUC</th></tr>"
        body = []
        for which, label in (("test", "test (β chosen on val)"), ("val", "validation (best stage-1 epoch)")):
            m = r.get(which)
            if not isinstance(m, dict):
                continue
            cells = "".join(f'<td class="num" data-key="{c}">{_pct(m.get(c))}</td>' for c in cols)
            beta = m.get("beta")
            cells += f'<td class="num">{"–" if beta is None else f"{beta:.4g}"}</td>'
            cells += f'<td class="num">{_pct(m.get("ausuc"))}</td>'
            body.append(f'<tr id="headline-{which}"><th>{_e(label)}</th>{cells}</tr>')
        parts.append('<table id="headline-table">' + head + "".join(body) + "</table>")
        parts.append('<p class="muted">S, U, HM, ZSL and AUSUC in percent. S/U: mean per-class accuracy over the '
                     "seen/unseen candidate classes at β; HM = 2SU/(S+U); ZSL: unseen videos among unseen classes "
                     "only; AUSUC: exact area under the seen–unseen curve over all β.</p>")
        best, e2 = r.get("best_epoch"), r.get("stage2_epochs")
        facts = {"best epoch (0-based, as in log.jsonl)": best, "stage-2 epochs (best epoch + 1)": e2}
        for k in ("model", "dataset", "feature_set", "split", "text_alignment", "seed"):
            if k in r:
                facts[k] = r[k]
        parts.append(_kv_table(facts, "headline-facts"))
        if an is not None:
            t = r["test"]
            diffs = [abs(an.summary[k] - t[k]) for k in ("seen", "unseen", "hm") if k in t]
            ok = bool(diffs) and max(diffs) < 1e-9
            msg = (f"Recomputed from eval/test.npz at β = {an.beta:.4g}: S {_pct(an.summary['seen'])}, "
                   f"U {_pct(an.summary['unseen'])}, HM {_pct(an.summary['hm'])} — "
                   + ("matches results.json." if ok else "DIFFERS from results.json."))
            parts.append(f'<p class="{"muted" if ok else "note"}" id="recomputed">{_e(msg)}</p>')
    parts.append('<h3 id="config">Config (config.yaml)</h3>')
    parts.append(f"<pre>{_e(run.config_text)}</pre>" if run.config_text is not None
                 else _note(_missing(run, RunFolder.CONFIG)))
    parts.append('<h3 id="environment">Versions and device (env.json)</h3>')
    parts.append(_kv_table(run.env, "env-table") if run.env is not None
                 else _note(_missing(run, RunFolder.ENV)))
    parts.append('<h3 id="timings">Timings (timings.json)</h3>')
    if run.timings is not None:
        tm = dict(run.timings)
        total = sum(v for v in tm.values() if isinstance(v, (int, float)))
        tm["total_s"] = round(total, 3)
        s1 = [r_ for r_ in run.rows if r_.get("stage") == 1 and "time_s" in r_]
        if s1:
            tm["mean stage-1 epoch (train + val), s"] = round(float(np.mean([r_["time_s"] for r_ in s1])), 3)
        parts.append(_kv_table(tm, "timings-table"))
    else:
        parts.append(_note(_missing(run, RunFolder.TIMINGS)))
    return _section("headline", "\n".join(parts))


def _training(run: RunFiles, png_dir: Path, written: list) -> str:
    if not run.rows:
        return _section("training", _note(f"{_missing(run, RunFolder.LOG, 'no epoch rows')} — "
                                          "no training curves."))
    best = run.results.get("best_epoch") if run.results else None
    png = plots.plot_training_curves(run.rows, best, png_dir / "training.png")
    written.append(png)
    n1 = sum(r.get("stage") == 1 for r in run.rows)
    n2 = sum(r.get("stage") == 2 for r in run.rows)
    text = (f'<p class="muted">{n1} stage-1 and {n2} stage-2 epochs from log.jsonl. Left: every loss term '
            "(mean over the epoch's batches), stage 1 solid, stage 2 dashed. Middle: validation S/U/HM after each "
            "stage-1 epoch, each at its own best β. Right: learning rate. The red dotted line is the chosen "
            "epoch (first epoch with the highest validation HM); stage 2 trains for chosen + 1 epochs.</p>")
    note = _note(_missing(run, RunFolder.LOG)) if RunFolder.LOG in run.notes else ""
    steps = ""
    if run.steps:
        sp = plots.plot_step_losses(run.steps, png_dir / "steps.png")
        written.append(sp)
        steps = ('<p class="muted">Every optimiser step from steps.jsonl: the total loss (grey) and running '
                 "means of each term.</p>" + _img(sp, "loss per step"))
    return _section("training", text + note + _img(png, "training curves") + steps)


def _calibration(run: RunFiles, an: TestAnalysis | None, png_dir: Path, written: list) -> str:
    r = run.results
    if r is None:
        return _section("calibration", _note("results.json missing: no calibration curve."))
    curves = r.get("curves") or {}
    parts = []
    t = r["test"]
    if curves.get("test_grid"):
        png = plots.plot_calibration(curves["test_grid"], curves.get("val"), t["beta"], t, t.get("ausuc"),
                                     (r.get("val") or {}).get("ausuc"), png_dir / "calibration.png")
        written.append(png)
        parts.append('<p class="muted">Calibrated stacking adds β to the distance of every seen class: larger β '
                     "moves predictions from seen to unseen classes, so S falls and U rises. Solid: test over the "
                     "β grid; dashed: validation (stage-1 model A). The red dotted line is the β chosen on "
                     "validation, at which the test numbers are reported (no β search on test).</p>")
        parts.append(_img(png, "calibration curve"))
    else:
        parts.append(_note("results.json has no curves.test_grid: no calibration curve."))
    if an is not None:
        U, S = seen_unseen_curve(an.nearest, an.label_cols, an.seen_mask)
        curve_u, curve_s = U, S
    else:
        curve_u = curve_s = None
        parts.append(_note(f"{_missing(run, RunFolder.TEST_EVAL)} — the seen–unseen curve "
                           "shows the β-grid points only."))
    if curve_u is not None or curves.get("test_grid"):
        png = plots.plot_seen_unseen(curve_u, curve_s, curves.get("test_grid"), t, t.get("ausuc"),
                                     png_dir / "seen_unseen.png")
        written.append(png)
        parts.append('<p class="muted">The seen–unseen curve: every β gives one (U, S) point; the line is the exact '
                     "curve over all β from −∞ (everything predicted seen: U = 0) to +∞ (everything unseen: "
                     "S = 0). "
                     "AUSUC is the shaded area; the star is the operating point at the chosen β.</p>")
        parts.append(_img(png, "seen-unseen curve"))
    return _section("calibration", "\n".join(parts))


def _modalities(run: RunFiles, png_dir: Path, written: list) -> str:
    modes = (run.results or {}).get("modalities")
    if not modes:
        why = ("results.json missing" if run.results is None else
               "the model scores with both modalities only (no single-modality evaluation: "
               "GZSLModel.eval_modes)")
        return _section("modalities", _note(f"No modality breakdown: {why}."))
    png = plots.plot_modalities(modes, png_dir / "modalities.png")
    written.append(png)
    rows = "".join(f'<tr><td>{_e(name)}</td>' + "".join(f'<td class="num">{_pct(m[k])}</td>'
                                                         for k in ("seen_only", "zsl", "ausuc", "hm_best"))
                   + "</tr>" for name, m in modes.items())
    table = ('<table id="modality-table"><tr><th>scored from</th><th>seen only (β → −∞)</th><th>ZSL</th>'
             f"<th>AUSUC</th><th>best HM on the curve (oracle)</th></tr>{rows}</table>")
    text = ('<p class="muted">The final model scored from both modalities (its results), from audio only and '
            "from video only (the other modality left out at test time: GZSLModel.mode_distances). The "
            "scorings' distance scales differ, so one β would not compare them: every number here is β-free. "
            "The last column picks β on the test set itself, a diagnostic, never a result.</p>")
    return _section("modalities", text + table + _img(png, "seen-unseen curve per modality"))


def _class_accuracy(run: RunFiles, an: TestAnalysis | None, png_dir: Path, written: list, cap: int) -> str:
    if an is None:
        return _section("class-accuracy", _note(f"{_missing(run, RunFolder.TEST_EVAL)} — "
                                                "no per-class accuracy."))
    png = class_plots.plot_class_accuracy(an.class_names, an.accuracy, an.seen_mask, an.beta,
                                    png_dir / "class_accuracy.png", cap=cap)
    written.append(png)
    valid = ~np.isnan(an.accuracy)
    parts = [f'<p class="muted">Accuracy of each test class at the chosen β = {an.beta:.4g}: the share of the '
             "class's test videos predicted as that class (seen and unseen candidates competing, β added to seen "
             "distances). Sorted, lowest first; the dashed line is the panel's mean, which is S (seen panel) or "
             "U (unseen panel).</p>"]
    if (~valid).any():
        parts.append(_note(f"{int((~valid).sum())} candidate class(es) have no test videos and are left out "
                           "(as in S and U)."))
    if max(int((an.seen_mask & valid).sum()), int((~an.seen_mask & valid).sum())) > cap:
        parts.append(_note(f"A panel has more than {cap} classes: it shows the {cap // 2} lowest and "
                           f"{cap - cap // 2} highest; the table below lists every class."))
    parts.append(_img(png, "per-class accuracy"))
    order = [c for c in np.lexsort((np.arange(len(an.accuracy)), an.accuracy, ~an.seen_mask)) if valid[c]]
    rows = []
    for c in order:
        kind = "seen" if an.seen_mask[c] else "unseen"
        rows.append(f'<tr class="{kind}" data-class-id="{int(an.class_ids[c])}" data-acc="{float(an.accuracy[c])!r}">'
                    f"<td>{_e(an.class_names[c])}</td><td>{kind}</td><td class=\"num\">{int(an.class_ids[c])}</td>"
                    f"<td class=\"num\">{int(an.counts[c])}</td><td class=\"num\">{_pct(an.accuracy[c])}</td></tr>")
    parts.append(f"<details><summary>All {len(order)} classes (table)</summary>"
                 '<table id="class-accuracy-table"><tr><th>class</th><th>seen/unseen</th><th>id</th>'
                 "<th>test videos</th><th>accuracy (%)</th></tr>" + "".join(rows) + "</table></details>")
    return _section("class-accuracy", "\n".join(parts))


def _confusions(run: RunFiles, an: TestAnalysis | None, k: int, png_dir: Path, written: list) -> str:
    if an is None:
        return _section("confusions", _note(f"{_missing(run, RunFolder.TEST_EVAL)} — "
                                            "no confusion table."))
    pairs = confused_pairs(an, k)
    wrong = int((an.pred_cols != an.label_cols).sum())
    parts = [f'<p class="muted">The {k} largest off-diagonal cells of the test confusion matrix at β = '
             f"{an.beta:.4g} ({wrong} of {len(an.label_cols)} test videos are misclassified). share = count / test "
             "videos of the true class. kind: seen→unseen means videos of a seen class went to an unseen class "
             "(their nearest unseen class beat their nearest seen one after β was added: β too large for them, or "
             "the unseen class embedding lies too close); unseen→seen is the opposite; seen→seen and "
             "unseen→unseen are confusions within one side, which β does not change.</p>"]
    if not pairs:
        parts.append(_note("No confusions: every test video is classified correctly."))
    else:
        rows = []
        for p in pairs:
            kind = f"{'seen' if p['true_seen'] else 'unseen'}→{'seen' if p['pred_seen'] else 'unseen'}"
            rows.append(f'<tr data-true-id="{p["true_id"]}" data-pred-id="{p["pred_id"]}" '
                        f'data-count="{p["count"]}" data-share="{p["share"]!r}">'
                        f"<td>{_e(p['true_name'])}</td><td>{_e(p['pred_name'])}</td>"
                        f"<td class=\"num\">{p['count']}</td><td class=\"num\">{100 * p['share']:.1f}%</td>"
                        f"<td>{kind}</td></tr>")
        parts.append('<table id="confusion-table"><tr><th>true class</th><th>predicted class</th><th>count</th>'
                     "<th>share of true class</th><th>kind</th></tr>" + "".join(rows) + "</table>")
    written.append(plot_confusion(an, png_dir / "confusion.png"))  # the whole matrix, seen | unseen blocks
    parts.append(_img(written[-1], "test confusion matrix"))
    return _section("confusions", "\n".join(parts))


def _embedding_map(run: RunFiles, an: TestAnalysis | None, png_dir: Path, written: list, method: str) -> str:
    test = run.test
    if test is None or "embeddings" not in test or "class_embeddings" not in test or len(test["embeddings"]) == 0:
        return _section("embedding-map", _note(f"{_missing(run, RunFolder.TEST_EVAL, 'holds no embeddings')} — "
                                               "no embedding map."))
    class_ids = np.asarray(test["class_ids"])
    seen_mask = np.asarray(test["seen_mask"], bool)
    emb = np.asarray(test["embeddings"])
    # newer runs store an evenly spread sample and its row indices; older ones the first rows
    rows = np.asarray(test["embedding_index"]) if "embedding_index" in test else np.arange(len(emb))
    labels = np.asarray(test["labels"])[rows]
    video_seen = seen_mask[np.searchsorted(class_ids, labels)]
    names = ([str(n) for n in test["class_names"]] if "class_names" in test
             else [f"class {int(c)}" for c in class_ids])
    priority, note = None, "unseen first"
    if an is not None:  # name the least accurate classes first (NaN: no test videos -> last)
        priority, note = np.lexsort((np.arange(len(an.accuracy)), np.nan_to_num(an.accuracy, nan=2.0))), \
            "least accurate first"
    png, used = class_plots.plot_embedding_map(emb, video_seen, np.asarray(test["class_embeddings"]), names, seen_mask,
                                         png_dir / "embedding_map.png", method=method, n_total=len(test["labels"]),
                                         label_priority=priority, label_note=note)
    written.append(png)
    parts = [f'<p class="muted">The test videos\' embeddings (dots) and the class embeddings (diamonds, labelled) '
             f"projected together to 2-D ({'PCA' if used == 'pca' else 't-SNE'}); blue = seen, orange = unseen "
             "(a video by its true class). The model predicts the nearest class embedding (L2, β added to seen "
             "classes), so videos far from their own class diamond, or unseen videos sitting among seen diamonds, "
             "are the errors to look at. PCA keeps global distances faithful only along two axes; t-SNE keeps "
             "neighbourhoods, not distances.</p>"]
    if method == "tsne" and used != "tsne":
        parts.append(_note("t-SNE was asked for but scikit-learn is not installed: PCA is shown."))
    if len(emb) < len(test["labels"]):
        which = "an evenly spread sample of" if "embedding_index" in test else "the first"
        parts.append(_note(f"The run stored embeddings for {which} {len(emb)} of {len(test['labels'])} test "
                           "videos; the map shows those."))
    parts.append(_img(png, "embedding map"))
    return _section("embedding-map", "\n".join(parts))


# ------------------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------------------
def write_report(run_dir: str | Path, out: str | Path | None = None, *, embedding: str = "pca",
                 top_k: int = 15, max_classes: int = plots.MAX_BARS) -> Path:
    """Write a self-contained HTML report of one run folder and return its path.

    run_dir: a run folder (results.json and/or log.jsonl; an unfinished run gives the training curves only).
    out: the HTML file (default RUN_DIR/report.html); the PNGs go to a folder beside it named after its stem
         (RUN_DIR/report/). The HTML embeds every PNG as base64, so it can be mailed on its own.
    embedding: "pca" (default) or "tsne" (only if scikit-learn is installed; otherwise PCA, with a note).
    top_k: confused pairs listed; max_classes: classes per per-class-accuracy panel.
    Raises AvgzslError for a folder that is not a run folder; missing optional files skip their sections.
    """
    if embedding not in ("pca", "tsne"):
        raise AvgzslError(f"embedding projection {embedding!r}: use 'pca' or 'tsne'")
    # the run folder's lock: never a report of a run that another process is rewriting; once held,
    # PNG and HTML temporaries of an earlier, killed report are removed
    with run_lock(run_dir, create=False, required=False):
        return _write_report(run_dir, out, embedding, top_k, max_classes)


def _write_report(run_dir: str | Path, out: str | Path | None, embedding: str, top_k: int, max_classes: int) -> Path:
    run = load_run(run_dir)
    out = Path(out) if out is not None else RunFolder(run.path).report_path
    png_dir = out.parent / out.stem
    with write_errors(png_dir):
        png_dir.mkdir(parents=True, exist_ok=True)
    an = None
    if run.test is not None and run.results is not None:
        try:
            an = analyse_test(run.test, float(run.results["test"]["beta"]))
        except (KeyError, ValueError) as e:
            run.notes[RunFolder.TEST_EVAL] = f"inconsistent with results.json ({e})"
    written: list[Path] = []
    body = [_headline(run, an), _training(run, png_dir, written), _calibration(run, an, png_dir, written),
            _modalities(run, png_dir, written), _class_accuracy(run, an, png_dir, written, max_classes), _confusions(run, an, top_k, png_dir, written),
            _embedding_map(run, an, png_dir, written, embedding)]
    for name in PNG_NAMES:  # a figure left from an earlier report whose section is now skipped
        stale = png_dir / name
        if stale.exists() and stale not in written:
            stale.unlink()
    r = run.results or {}
    title = f"avgzsl run report: {run.name}"
    sub = " · ".join(_e(r[k]) for k in ("model", "dataset", "split") if k in r)
    skipped = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in run.notes.items())
    nav = "".join(f'<a href="#{sid}">{_e(h)}</a>' for sid, h in SECTIONS.items())
    doc = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
           f"<style>{CSS}</style></head><body>\n<h1>{_e(title)}</h1>\n<p class=\"muted\">{sub}<br>"
           f"{_e(run.path.resolve())}</p>\n<nav>{nav}</nav>\n"
           + (f'<div class="note" id="skipped">Files not used:<ul>{skipped}</ul></div>\n' if skipped else "")
           + "".join(body) + "</body></html>\n")
    write_text(out, doc)
    return out


def report_finished_run(run_dir: str | Path) -> Path | None:
    """The report a command writes at the end of a run: `write_report(run_dir)`, where any failure is one
    warning instead of an error (a plotting problem must not fail a finished run). The HTML path, or None."""
    try:
        return write_report(run_dir)
    except Exception as e:  # noqa: BLE001
        log.warning("%s: could not write report.html (%s: %s); try `avgzsl report %s`", run_dir,
                    type(e).__name__, e, run_dir)
        return None


# load_run, analyse_test and confused_pairs live in reports/runfiles.py; also importable from here
__all__ = ["write_report", "report_finished_run", "load_run", "analyse_test", "confused_pairs", "RunFiles",
           "TestAnalysis", "SECTIONS"]
