"""`avgzsl reproduce` on tiny synthetic data: tables in the paper's layout; a killed reproduce resumes."""
import csv
import os
import subprocess
import sys

import pytest
from pathlib import Path

from _procs import kill_when

TINY = ["--set", "epochs=2", "--set", "n_batches=4", "--set", "bs=16", "--set", "eval_bs=512"]


def cli(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "avgzsl.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


@pytest.mark.slow
def test_reproduce_table3_resumes_after_kill(tmp_path):
    env = {**os.environ, "AVGZSL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "repro"
    args = ["reproduce", "--tables", "3", "--datasets", "ucf", "--seeds", "0,1", "--out", str(out),
            "--synthetic-scale", "0.1", "--quiet", "--pack", "1", *TINY]
    p = cli(args, env)
    runs = lambda: sorted(out.glob("ucf/*/seed*/results.json"))  # noqa: E731
    kill_when(p, lambda: bool(runs()), timeout=300)
    first = runs()
    assert 1 <= len(first) < 4
    stamps = {f: f.stat().st_mtime_ns for f in first}

    p = cli(args, env)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr.decode()[-2000:]
    assert len(runs()) == 4  # 2 variants (MFT, w/o attention) x 2 seeds
    # each run made by this reproduce has its report (the killed one's may lack it: killed before its report)
    assert all((f.parent / "report.html").exists() for f in runs() if f not in stamps)
    assert all(f.stat().st_mtime_ns == s for f, s in stamps.items())  # finished runs were not redone
    assert f"[1/{4 - len(first)}]" in stdout.decode()

    md = (out / "tables.md").read_text()
    assert "Table 3" in md and "w/o attention" in md and "Synthetic data" in md
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert header.count("UCF-GZSL") == 4 and all(f"UCF-GZSL {m}" in header for m in ("S", "U", "HM", "ZSL"))
    rows = list(csv.DictReader((out / "tables.csv").open()))
    mft_hm = [r for r in rows if r["method"] == "MFT" and r["metric"] == "hm"]
    assert len(mft_hm) == 1 and mft_hm[0]["n"] == "2" and float(mft_hm[0]["paper"]) == 57.12


def test_dry_run_lists_every_run_once(tmp_path, capsys):
    from avgzsl.cli import main
    assert main(["reproduce", "--dry-run", "--no-probe", "--tables", "3,4,5", "--datasets", "ucf", "--seeds", "0,1",
                 "--out", str(tmp_path)]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("todo")]
    # MFT appears in all three tables but runs once: 6 variants x 2 seeds
    assert len(lines) == 12
    assert sum("mft.attention=none" in x for x in lines) == 2


def test_dry_run_estimates_from_finished_seeds(tmp_path, capsys):
    import json

    from avgzsl.cli import main
    for seed, timings in ((0, {"stage1_s": 100.0, "stage2_s": 40.0, "test_s": 0.5}),
                          (1, {"stage1_s": 80.0, "stage2_s": 19.5, "test_s": 0.5})):
        run = tmp_path / "ucf" / "mft-no-attention" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "timings.json").write_text(json.dumps(timings))
        (run / "results.json").write_text("{}")
    assert main(["reproduce", "--dry-run", "--no-probe", "--tables", "3", "--datasets", "ucf", "--seeds", "0,1,2",
                 "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    todo = {x.split()[2]: x for x in lines if x.startswith("todo")}
    assert sorted(todo) == ["mft", "mft-no-attention"]
    assert "~2.0 min (measured)" in todo["mft-no-attention"]  # (140.5 + 100) / 2 s
    assert "(measured)" not in todo["mft"]  # no finished seed of MFT: the benchmark rate or the default


def test_table2_plans_every_registered_model_on_every_dataset(tmp_path, capsys):
    from avgzsl.cli import main
    from avgzsl.config import PRESET_DIR
    from avgzsl.models import list_models
    from avgzsl.reports import paper
    datasets = ["ucf", "activitynet", "vggsound"]
    assert main(["reproduce", "--dry-run", "--no-probe", "--tables", "2", "--datasets", ",".join(datasets),
                 "--seeds", "0", "--out", str(tmp_path)]) == 0
    planned = {(x.split()[1], x.split()[2]) for x in capsys.readouterr().out.splitlines() if x.startswith("todo")}
    # every implemented model is a row of the paper's Table 2, and each runs with its own preset per dataset
    assert set(list_models()) <= {name for name, _, _ in paper.TABLE2.values()}
    assert planned == {(ds, m) for ds in datasets for m in list_models()}
    assert all((PRESET_DIR / f"{m}_{ds}.yaml").exists() for ds, m in planned)


def test_dry_run_estimate_needs_no_benchmarks_folder(tmp_path):
    """The benchmark rates ship inside the package: an installed copy (no repo around it, so no
    benchmarks/ folder) estimates MFT on UCF from them, as the repo does."""
    import shutil
    from pathlib import Path

    import avgzsl
    site = tmp_path / "site"
    shutil.copytree(Path(avgzsl.__file__).parent, site / "avgzsl", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys, avgzsl; assert avgzsl.__file__.startswith(sys.argv[1]), avgzsl.__file__\n"
            "from avgzsl.cli import main\n"
            "sys.exit(main(['reproduce', '--dry-run', '--no-probe', '--tables', '3', '--datasets', 'ucf', '--seeds', '0', "
            "'--out', sys.argv[2]]))")
    env = {**os.environ, "PYTHONPATH": str(site), "AVGZSL_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-c", code, str(site), str(tmp_path / "out")], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    todo = {x.split()[2]: x for x in p.stdout.splitlines() if x.startswith("todo")}
    assert sorted(todo) == ["mft", "mft-no-attention"]
    assert all("(benchmark)" in line for line in todo.values()), p.stdout


def test_dry_run_probes_each_variant_once_on_this_machine(tmp_path, monkeypatch):
    """The estimate comes from a training probe measured here (one per variant and dataset, shared by its
    seeds): planned samples / probed samples per second."""
    from avgzsl import reproduce as rp
    from avgzsl.config import load_config, resolve_config
    calls = []
    real = rp.probe_rate

    def counted(exp, device="cpu", cache=None):
        calls.append(exp.variant.key)
        return real(exp, device, cache)
    monkeypatch.setattr(rp, "probe_rate", counted)
    monkeypatch.setattr(rp, "PROBE_BATCHES", 2)
    rates = {}
    plan = rp.plan({"ucf": Path("<synthetic>")}, [3], [0, 1], tmp_path, ("mft.d_model=32", "mft.heads=2"))
    est = [rp.estimate_seconds(e, probe=rates, cache=tmp_path / "cache") for e in plan]
    assert sorted(calls) == ["mft", "mft-no-attention"] and all(src == "probe" for _, src in est)
    for e, (sec, _) in zip(plan, est):
        cfg = load_config(resolve_config(e.preset), e.sets())
        rate = rates[("ucf", e.variant.key)]
        assert rate > 0 and sec == pytest.approx(1.75 * cfg.epochs * cfg.n_batches * cfg.bs / rate)


def test_packaged_rates_are_the_benchmark_results_and_ship_in_the_wheel():
    import json
    from pathlib import Path

    from avgzsl.reproduce import TRAIN_RATES
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    repo = Path(__file__).resolve().parents[1]
    packaged = json.loads(TRAIN_RATES.read_text())["runs"]
    measured = repo / "benchmarks" / "results" / "protocol.json"
    if measured.exists():  # a checkout: the shipped copy must agree with the measured file
        rows = json.loads(measured.read_text())["runs"]
        assert packaged == [{k: r[k] for k in ("model", "dataset", "train_samples_per_s")} for r in rows]
    pyproject = repo / "pyproject.toml"
    if pyproject.exists():
        data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["avgzsl"]
        assert TRAIN_RATES.name in data


def test_pack_groups_put_seeds_of_one_packable_variant_together(tmp_path):
    from avgzsl import reproduce as rp
    plan = rp.plan({"ucf": Path("<synthetic>")}, [2], [0, 1, 2], tmp_path)
    groups = rp.pack_groups(plan, {"mft": 2, "clipclap": 3, "avca": 3})
    assert sum(len(g) for g in groups) == len(plan) and [e for g in groups for e in g] == plan  # plan order kept
    by_key = {}
    for g in groups:
        assert len({(e.dataset, e.variant) for e in g}) == 1  # only seeds of one variant share a pack
        by_key.setdefault(g[0].variant.key, []).append([e.seed for e in g])
    assert by_key["mft"] == [[0, 1], [2]] and by_key["clipclap"] == [[0, 1, 2]]
    assert by_key["avca"] == [[0], [1], [2]]  # not packable (tests/test_pack.py): alone however large K is
    assert by_key["tcaf"] == [[0], [1], [2]]  # packable, but no size given for it
    assert all(len(g) == 1 for g in rp.pack_groups(plan, 1))


def test_choose_pack_keeps_a_pack_only_where_it_is_faster():
    from avgzsl.reproduce import PACK_GAIN, choose_pack
    assert choose_pack({1: 100.0, 2: 90.0, 3: 95.0}) == 1
    assert choose_pack({1: 100.0, 2: 100.0 * PACK_GAIN * 0.99}) == 1  # within the margin: not worth it
    assert choose_pack({1: 100.0, 2: 150.0, 3: 180.0, 4: 170.0}) == 3


@pytest.mark.slow
def test_reproduce_packs_seeds_and_writes_every_run_folder(tmp_path):
    env = {**os.environ, "AVGZSL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "repro"
    p = cli(["reproduce", "--tables", "3", "--datasets", "ucf", "--seeds", "0,1", "--out", str(out),
             "--synthetic-scale", "0.1", "--pack", "2", "--jobs", "1", *TINY, "--set", "mft.d_model=32",
             "--set", "mft.heads=2"], env)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr.decode()[-2000:]
    text = stdout.decode()
    assert "ucf mft seeds 0,1 (packed)" in text and "ucf mft-no-attention seeds 0,1 (packed)" in text
    assert "[1/2]" in text and "[2/2]" in text  # two packs, not four runs
    results = sorted(out.glob("ucf/*/seed*/results.json"))
    assert len(results) == 4 and all((f.parent / "report.html").exists() for f in results)
    assert not (out / "pack_probe.json").exists()  # an explicit --pack K does not probe


def test_pack_flag_is_checked():
    from avgzsl.cli import main
    assert main(["reproduce", "--dry-run", "--no-probe", "--pack", "0", "--tables", "3", "--datasets", "ucf"]) != 0
