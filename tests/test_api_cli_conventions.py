"""The conventions a researcher expects of the package: the README's Python snippet runs verbatim from any
folder, top-level entry points, `--version` / `python -m avgzsl`, and "did you mean" errors that blame the
right source (the --set overrides, not the preset file they override)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import avgzsl
from avgzsl.config import load_config
from avgzsl.errors import ConfigError, did_you_mean

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_snippet_runs_verbatim_from_another_folder(tmp_path):
    text = (ROOT / "README.md").read_text()
    snippet = re.search(r"## Python API\n\n```python\n(.*?)```", text, re.S).group(1)
    env = {**os.environ, "AVGZSL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "'hm':" in p.stdout
    runs = list((tmp_path / "runs").glob("mft-ucf-*/results.json"))
    assert len(runs) == 1


def test_top_level_exports_resolve_to_the_library_functions():
    from avgzsl.checkpoint import load_model
    from avgzsl.data.benchmark import load_benchmark
    from avgzsl.predict import Predictor
    from avgzsl.protocol import run_protocol
    assert avgzsl.load_benchmark is load_benchmark and avgzsl.run_protocol is run_protocol
    assert avgzsl.load_config is load_config and avgzsl.load_model is load_model and avgzsl.Predictor is Predictor
    assert set(avgzsl.__all__) <= set(dir(avgzsl))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        avgzsl.nope


def test_import_avgzsl_does_not_import_torch():
    p = subprocess.run([sys.executable, "-c", "import sys, avgzsl; print('torch' in sys.modules)"],
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "False"


@pytest.mark.parametrize("argv", [["-m", "avgzsl", "--version"], ["-c", "from avgzsl.cli import main; main(['--version'])"]])
def test_version(argv):
    p = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == f"avgzsl {avgzsl.__version__}"


def test_did_you_mean():
    assert did_you_mean("epochz", ["epochs", "lr"]) == " (did you mean 'epochs'?)"
    assert did_you_mean("zzz", ["epochs", "lr"]) == ""


def test_load_config_takes_preset_names_and_paths():
    by_name = load_config("mft_ucf")
    by_path = load_config(ROOT / "src" / "avgzsl" / "configs" / "mft_ucf.yaml")
    assert by_name == by_path and by_name.model == "mft"


@pytest.mark.parametrize("sets, match", [
    (["epochz=3"], r"^--set: unknown key\(s\) epochz \(did you mean 'epochs'\?\)"),
    (["mft.hiden=3"], r"^--set: unknown key\(s\) mft.hiden \(did you mean 'mft.hidden'\?\)"),
    (["clipclap.hidden=3"], r"^--set: clipclap.\*: settings of model 'clipclap', but the model is 'mft'"),
])
def test_an_unknown_set_key_blames_set_not_the_preset(sets, match):
    with pytest.raises(ConfigError, match=match):
        load_config("mft_ucf", sets)


def test_unknown_names_suggest_the_close_one(tmp_path):
    (tmp_path / "c.yaml").write_text("epochz: 3\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key\(s\) epochz \(did you mean 'epochs'\?\)"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"mft_uc: neither a config file nor a preset \(did you mean 'mft_ucf'\?\)"):
        load_config("mft_uc")
    with pytest.raises(ConfigError, match=r"unknown model 'mtf' \(did you mean 'mft'\?\)"):
        load_config(None, ["model=mtf"])


@pytest.mark.parametrize("where", ["global", "command"])
def test_quiet_silences_every_progress_bar(tmp_path, capsys, where):
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import tiny_benchmark
    from avgzsl.cli import main
    from avgzsl.data.native import write_native
    root = write_native(tiny_benchmark(), tmp_path / "data")
    sets = ["--set", "epochs=1", "--set", "n_batches=2", "--set", "bs=8", "--set", "clipclap.hidden=16"]
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "loud"), *sets]) == 0
    assert "stage 1" in capsys.readouterr().err  # the bars this test expects to disappear
    quiet = ["--quiet", "train"] if where == "global" else ["train", "--quiet"]
    assert main([*quiet, "--data", str(root), "--out", str(tmp_path / "quiet"), *sets]) == 0
    err = capsys.readouterr().err
    assert "stage 1" not in err and "it/s" not in err and "%|" not in err, err[-500:]


def test_h5py_is_optional_and_its_absence_is_one_line(tmp_path, monkeypatch):
    from avgzsl.data import features
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if not installed
    with pytest.raises(Exception) as e:
        features._read_h5(tmp_path / "audio.h5")
    assert type(e.value).__name__ == "DataError"
    assert str(e.value) == (f"{tmp_path / 'audio.h5'}: reading .h5 feature files needs h5py: pip install h5py "
                            f"(or the extra: pip install 'avgzsl[h5]')")


def test_demo_runs_its_own_budget_and_set_overrides_it(monkeypatch, tmp_path):
    import avgzsl.cli as cli
    import avgzsl.data.synthetic as synthetic
    seen = []
    monkeypatch.setattr(synthetic, "synthetic_root", lambda *a, **kw: tmp_path)
    monkeypatch.setattr(cli, "cmd_train", lambda ns: seen.append(ns) or 0)
    assert cli.main(["demo", "--quiet"]) == 0
    assert cli.main(["demo", "--quiet", "--set", "n_batches=300", "--set", "epochs=2"]) == 0
    preset = load_config(seen[0].config)
    assert load_config(seen[0].config, seen[0].set).n_batches == 200 != preset.n_batches
    again = load_config(seen[1].config, seen[1].set)
    assert (again.n_batches, again.epochs) == (300, 2)
