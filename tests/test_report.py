"""Run reports and run comparison: every section present, images embedded and valid, numbers re-derived here."""
import base64
import json
import re
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from avgzsl.config import load_config
from avgzsl.errors import AvgzslError
from avgzsl.protocol import run_protocol
from avgzsl.reports.compare import compare_runs
from avgzsl.reports.class_plots import project_2d
from avgzsl.reports.report import SECTIONS, report_finished_run, write_report
from conftest import tiny_benchmark

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST = ["epochs=3", "n_batches=8", "bs=16", "lr=1e-3", "clipclap.hidden=32", "clipclap.dim_out=16"]
FIGURES = ("training.png", "steps.png", "calibration.png", "seen_unseen.png", "class_accuracy.png", "confusion.png",
           "embedding_map.png")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished tiny runs (seeds 0 and 1)."""
    import torch
    root = tmp_path_factory.mktemp("runs")
    out = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and kinder to a shared machine
    try:
        for seed in (0, 1):
            path = root / f"seed{seed}"
            run_protocol(load_config(None, FAST + [f"seed={seed}"]), tiny_benchmark(), path)
            out.append(path)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def report(runs):
    path = write_report(runs[0])
    return path, path.read_text()


def explicit_predictions(npz, beta):
    """Predicted class id per test video, one video at a time (argmin of distance + beta on seen, ties low)."""
    ids = npz["class_ids"]
    preds = []
    for i in range(len(npz["labels"])):
        s_col, u_col = int(npz["nearest_seen_col"][i]), int(npz["nearest_unseen_col"][i])
        shifted = np.float32(npz["nearest_seen_dist"][i]) + np.float32(beta)
        u = np.float32(npz["nearest_unseen_dist"][i])
        goes_seen = shifted < u or (shifted == u and s_col < u_col)
        preds.append(int(ids[s_col if goes_seen else u_col]))
    return preds


def beta_of(run):
    return json.loads((run / "results.json").read_text())["test"]["beta"]


def test_every_section_is_present_and_images_are_embedded(runs, report):
    path, html = report
    assert path == runs[0] / "report.html"
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html, sid
    for sub in ("headline-table", "config", "environment", "timings", "confusion-table", "class-accuracy-table"):
        assert f'id="{sub}"' in html, sub
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(embedded) == len(FIGURES)
    files = [runs[0] / "report" / name for name in FIGURES]
    for f in files:
        data = f.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, f
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(f.read_bytes() for f in files)
    assert "src=\"report/" not in html and "file:" not in html  # self-contained: no links to the PNG files
    results = json.loads((runs[0] / "results.json").read_text())
    assert f"{100 * results['test']['hm']:.2f}" in html
    assert "matches results.json" in html


def test_confusion_table_counts_match_an_explicit_count(runs, report):
    _, html = report
    npz = np.load(runs[0] / "eval" / "test.npz")
    labels = [int(x) for x in npz["labels"]]
    preds = explicit_predictions(npz, beta_of(runs[0]))
    pairs = Counter((t, p) for t, p in zip(labels, preds) if t != p)
    per_class = Counter(labels)
    shown = re.findall(r'data-true-id="(\d+)" data-pred-id="(\d+)" data-count="(\d+)" data-share="([0-9.e-]+)"', html)
    assert shown, "the tiny run should make some mistakes"
    for t, p, count, share in shown:
        t, p, count = int(t), int(p), int(count)
        assert count == pairs[(t, p)]
        assert float(share) == pytest.approx(count / per_class[t])
    # it is the top of the list: nothing left out has a larger count than the smallest shown
    shown_keys = {(int(t), int(p)) for t, p, _, _ in shown}
    assert len(shown_keys) == min(15, len(pairs))
    left_out = [c for k, c in pairs.items() if k not in shown_keys]
    assert max(left_out, default=0) <= min(int(c) for _, _, c, _ in shown)


def test_per_class_accuracy_matches_an_explicit_loop(runs, report):
    _, html = report
    npz = np.load(runs[0] / "eval" / "test.npz")
    labels = [int(x) for x in npz["labels"]]
    preds = explicit_predictions(npz, beta_of(runs[0]))
    shown = {int(c): float(a) for c, a in re.findall(r'data-class-id="(\d+)" data-acc="([0-9.e-]+)"', html)}
    want = {}
    for c in npz["class_ids"]:
        idx = [i for i, y in enumerate(labels) if y == int(c)]
        if idx:
            want[int(c)] = sum(preds[i] == labels[i] for i in idx) / len(idx)
    assert shown == pytest.approx(want, abs=1e-12)
    seen = {int(c) for c, m in zip(npz["class_ids"], npz["seen_mask"]) if m}
    test = json.loads((runs[0] / "results.json").read_text())["test"]
    assert np.mean([a for c, a in shown.items() if c in seen]) == pytest.approx(test["seen"])
    assert np.mean([a for c, a in shown.items() if c not in seen]) == pytest.approx(test["unseen"])


def test_missing_npz_skips_its_sections_with_a_note(runs, report, tmp_path):
    run = tmp_path / "no_npz"
    shutil.copytree(runs[0], run)  # with its full report: the npz-based figures must not survive the next one
    assert len(list((run / "report").iterdir())) == len(FIGURES)
    (run / "eval" / "test.npz").unlink()
    (run / "timings.json").unlink()
    html = write_report(run).read_text()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html
    assert "eval/test.npz: missing" in html and "timings.json: missing" in html
    assert 'id="confusion-table"' not in html and 'id="class-accuracy-table"' not in html
    assert len(re.findall("data:image/png;base64,", html)) == 4  # training, steps, calibration, seen-unseen (grid)
    assert sorted(p.name for p in (run / "report").iterdir()) == ["calibration.png", "seen_unseen.png",
                                                                  "steps.png", "training.png"]


def test_unfinished_run_gives_training_curves_and_out_path(runs, tmp_path):
    run = tmp_path / "unfinished"
    run.mkdir()
    lines = (runs[0] / "log.jsonl").read_text().splitlines()
    (run / "log.jsonl").write_text("\n".join(lines[:2]) + "\n")
    out = write_report(run, out=tmp_path / "elsewhere" / "r.html")
    html = out.read_text()
    assert out == tmp_path / "elsewhere" / "r.html" and (tmp_path / "elsewhere" / "r" / "training.png").exists()
    assert "the run has not finished" in html and len(re.findall("data:image/png;base64,", html)) == 1


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, runs):
    with pytest.raises(AvgzslError, match=re.escape(str(tmp_path))):
        write_report(tmp_path)
    with pytest.raises(AvgzslError, match="nowhere"):
        write_report(tmp_path / "nowhere")
    with pytest.raises(AvgzslError, match=re.escape(str(tmp_path))):
        compare_runs([runs[0], tmp_path])


def test_compare_runs_tables_both_and_draws_a_png(runs, tmp_path):
    table, png = compare_runs(runs, out=tmp_path / "cmp.png")
    lines = table.splitlines()
    assert lines[0].split() == ["name", "model", "dataset", "seed", "S", "U", "HM", "ZSL", "beta", "AUSUC"]
    for run, line in zip(runs, lines[2:]):
        r = json.loads((run / "results.json").read_text())
        t = r["test"]
        assert line.split() == [run.name, r["model"], r["dataset"], str(r["seed"])] + \
            [f"{100 * t[k]:.2f}" for k in ("seen", "unseen", "hm", "zsl")] + [f"{t['beta']:.3f}",
                                                                              f"{100 * t['ausuc']:.2f}"]
    assert lines[4] == "" and lines[5].startswith("over seeds")
    data = png.read_bytes()
    assert png == tmp_path / "cmp.png" and data[:8] == PNG_MAGIC and len(data) > 10_000
    assert (tmp_path / "cmp.txt").read_text() == table


def test_compare_aggregates_runs_that_differ_only_by_seed(runs, tmp_path):
    """The two seed runs form one group (mean ± sample std by hand); a run with another lr is its own
    group, shown as "(1 seed)", never "± 0.00"; the HM-vs-β overlay is drawn."""
    other = tmp_path / "lr"
    run_protocol(load_config(None, FAST[:3] + ["lr=3e-3"] + FAST[4:] + ["seed=0"]), tiny_benchmark(), other)
    table, _ = compare_runs([*runs, other], out=tmp_path / "cmp.png")
    part = table.split("over seeds (runs that differ only by seed; mean ± sample std):\n")[1].splitlines()
    assert part[0].split() == ["group", "seeds", "S", "U", "HM", "ZSL", "AUSUC"]
    hm = [100 * json.loads((r / "results.json").read_text())["test"]["hm"] for r in runs]
    mean, sd = (hm[0] + hm[1]) / 2, abs(hm[0] - hm[1]) / 2 ** 0.5  # sample std of two values
    first, second = part[2], part[3]
    assert first.startswith("clipclap / ") and " 0,1 " in first and f"{mean:.2f} ± {sd:.2f}" in first
    other_hm = 100 * json.loads((other / "results.json").read_text())["test"]["hm"]
    assert "#2" in second and f"{other_hm:.2f} (1 seed)" in second and "±" not in second
    hm_png = tmp_path / "cmp-hm.png"
    assert hm_png.read_bytes()[:8] == PNG_MAGIC and f"HM vs β over seeds: {hm_png}" in table


def test_pca_projection_is_deterministic_and_tsne_falls_back():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) * np.array([10, 3, 0.1, 0.1, 0.1, 0.1])
    y, used = project_2d(x)
    assert used == "pca" and y.shape == (50, 2)
    assert np.var(y[:, 0]) > np.var(y[:, 1]) > 0.5  # the two large-variance directions come first
    assert np.array_equal(y, project_2d(x)[0])
    try:
        import sklearn  # noqa: F401
    except ImportError:
        assert project_2d(x, "tsne")[1] == "pca"


def test_reports_do_not_touch_pyplot_or_global_settings(tmp_path):
    code = ("import sys, matplotlib; size = matplotlib.rcParams['font.size']; "
            "from avgzsl.reports.plots import plot_seen_unseen; import avgzsl.reports.compare; "
            f"plot_seen_unseen([0, 0.5, 1], [1, 0.5, 0], None, None, 0.5, {str(tmp_path / 'su.png')!r}); "
            "print('matplotlib.pyplot' in sys.modules, matplotlib.rcParams['font.size'] == size)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]  # no pyplot (so no backend chosen for the user), rcParams restored


def test_the_report_after_a_run_is_a_warning_when_it_fails(tmp_path, caplog):
    """What train, reproduce and sweep call after a run: a failure is one warning naming the fix, not an error."""
    run = tmp_path / "run"
    run.mkdir()
    with caplog.at_level("WARNING"):
        assert report_finished_run(run) is None
    msg = caplog.records[-1].getMessage()
    assert msg.startswith(f"{run}: could not write report.html (AvgzslError: ") and msg.endswith(
        f"; try `avgzsl report {run}`"), msg


def test_confusion_matrix_counts_each_video_once_in_seen_then_unseen_order():
    from types import SimpleNamespace

    from avgzsl.reports.confusion import class_order, confusion_matrix
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 5, 40), rng.integers(0, 5, 40)
    an = SimpleNamespace(class_ids=np.arange(5), class_names=["e", "B", "c", "a", "D"], label_cols=labels,
                         pred_cols=preds, seen_mask=np.array([False, True, True, False, True]))
    m = confusion_matrix(an)
    explicit = np.zeros((5, 5), int)
    for t, p in zip(labels, preds):
        explicit[t, p] += 1
    assert np.array_equal(m, explicit) and m.sum() == 40
    assert class_order(an).tolist() == [1, 2, 4, 3, 0]  # seen B, c, D; then unseen a, e


def test_modality_breakdown_section_for_a_model_with_single_modality_scoring(tmp_path, runs, report):
    _, clipclap_html = report  # ClipClap scores with both modalities only: a note, no figure
    assert "No modality breakdown" in clipclap_html and not (runs[0] / "report" / "modalities.png").exists()
    out = tmp_path / "avgzslnet"
    run_protocol(load_config(None, ["epochs=2", "n_batches=4", "bs=16", "model=avgzslnet", "avgzslnet.hidden=16",
                                    "avgzslnet.dim_out=8"]), tiny_benchmark(), out)
    html = write_report(out).read_text()
    modes = json.loads((out / "results.json").read_text())["modalities"]
    table = html.split('id="modality-table"')[1].split("</table>")[0]
    for name in ("both", "audio", "video"):
        row = table.split(f"<td>{name}</td>")[1].split("</tr>")[0]
        cells = re.findall(r'<td class="num">([^<]*)</td>', row)
        assert cells == [f"{100 * modes[name][k]:.2f}" for k in ("seen_only", "zsl", "ausuc", "hm_best")]
    data = (out / "report" / "modalities.png").read_bytes()
    assert data[:8] == PNG_MAGIC and base64.b64encode(data).decode() in html


def test_embedding_map_labels_do_not_overlap_in_a_crowd():
    from avgzsl.reports.class_plots import place_labels, text_box
    from avgzsl.reports.plots import new_figure

    rng = np.random.default_rng(0)
    fig = new_figure(9.0, 7.6)
    ax = fig.subplots()
    pts = rng.normal(scale=0.05, size=(14, 2))  # a tight crowd in the middle of a wide, empty axes
    ax.scatter(pts[:, 0], pts[:, 1])
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    texts = place_labels(ax, pts, [f"a long class name {i}" for i in range(len(pts))], obstacles=pts)
    renderer = fig.canvas.get_renderer()
    boxes = [text_box(t, renderer) for t in texts]
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    pairs = [(i, j) for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]
    assert pairs == []
    # control: the fixed offset every label had before overlaps in the same crowd
    fixed = [text_box(ax.annotate("a long class name", tuple(p), textcoords="offset points", xytext=(6, 5)),
                      renderer) for p in pts]
    assert any(fixed[i].overlaps(fixed[j]) for i in range(len(fixed)) for j in range(i))


def test_class_accuracy_bars_are_equally_thick_in_both_panels(tmp_path, monkeypatch):
    from matplotlib.patches import Rectangle

    from avgzsl.reports import class_plots

    figs = []

    def capture(fig, path):  # keep the figure instead of saving it
        fig.canvas.draw()
        figs.append(fig)
        return path

    monkeypatch.setattr(class_plots, "save_figure", capture)
    acc = np.r_[np.linspace(0, 1, 30), [0.9, 0.2, 0.5]]  # 30 seen classes, 3 unseen
    seen = np.r_[np.ones(30, bool), np.zeros(3, bool)]
    class_plots.plot_class_accuracy([f"class {i}" for i in range(33)], acc, seen, 0.5, tmp_path / "x.png")
    (fig,) = figs
    thick = [np.median([p.get_window_extent().height for p in ax.patches if isinstance(p, Rectangle)])
             for ax in fig.axes]
    assert len(thick) == 2 and thick[1] == pytest.approx(thick[0], rel=0.02)  # 3 bars as thick as 30
    unseen = fig.axes[1]
    top_down = [t.get_text() for t in sorted(unseen.get_yticklabels(), key=lambda t: -t.get_position()[1])]
    assert top_down == ["class 31", "class 32", "class 30"]  # lowest accuracy at the top
    assert min(t.get_position()[1] for t in unseen.get_yticklabels()) == 27  # from the top of 30 slots
