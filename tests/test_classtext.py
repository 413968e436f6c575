"""A benchmark's text space, declared by config (`text_space`) and recorded where predict reads it."""
import pytest
import torch

from conftest import tiny_benchmark

from avgzsl.classtext import declare_text_space
from avgzsl.config import load_config
from avgzsl.errors import ConfigError
from avgzsl.protocol import run_protocol


def test_declared_text_space_reaches_the_checkpoint(tmp_path):
    bench = declare_text_space(tiny_benchmark(dt=384), "minilm-l6-v2")
    assert bench.text_space == "minilm-l6-v2"
    cfg = load_config(None, ["epochs=1", "n_batches=2", "bs=8", "clipclap.hidden=16"])
    run_protocol(cfg, bench, tmp_path / "run")
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "stage2_final.pt", weights_only=True)
    assert ckpt["text_space"]["name"] == "minilm-l6-v2" and ckpt["text_space"]["dim"] == 384


def test_undeclared_text_space_is_the_feature_sets():
    from avgzsl.spaces import text_space_name
    bench = tiny_benchmark()
    assert "text_space" not in bench.info and bench.text_space == text_space_name(bench.feature_set)


def test_a_known_space_of_another_dim_is_refused():
    with pytest.raises(ConfigError, match="text_space=minilm-l6-v2: that space is 384-d, but the class text"):
        declare_text_space(tiny_benchmark(dt=10), "minilm-l6-v2")
    assert declare_text_space(tiny_benchmark(dt=10), "my-own-space").text_space == "my-own-space"
