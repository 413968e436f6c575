"""Metrics against hand arithmetic and against the straightforward (N, C) argmin."""
import numpy as np
import pytest

from avgzsl.metrics import (area_under_curve, curve_summary, gzsl_metrics, harmonic_mean, nearest_seen_unseen,
                            predict_columns)

# candidates: class ids 2 and 5 seen, 7 unseen
CLASS_IDS = np.array([2, 5, 7])
SEEN = np.array([True, True, False])
DIST = np.array([
    [1.0, 2.0, 1.5],  # label 2
    [3.0, 1.0, 4.0],  # label 2: nearest seen is 5 -> never right
    [2.0, 0.5, 1.0],  # label 5
    [0.5, 2.0, 1.0],  # label 7: wrong at beta 0, right once beta > 0.5; right under ZSL
    [1.0, 1.0, 0.2],  # label 7
], dtype=np.float32)
LABELS = np.array([2, 2, 5, 7, 7])


def metrics(betas):
    return gzsl_metrics(nearest_seen_unseen(DIST, SEEN), LABELS, CLASS_IDS, SEEN, np.asarray(betas))


def test_hand_computed_beta_zero():
    r = metrics([0.0])
    # class 2: 1/2, class 5: 1/1 -> S = 0.75; class 7: 1/2 -> U = 0.5; HM = 2*.75*.5/1.25
    assert r.seen[0] == pytest.approx(0.75)
    assert r.unseen[0] == pytest.approx(0.5)
    assert r.hm[0] == pytest.approx(0.6)


def test_beta_shifts_predictions_from_seen_to_unseen():
    r = metrics([1.0])
    # every video goes unseen: both seen classes have no correct prediction, class 7 has all
    assert r.seen[0] == 0.0 and r.unseen[0] == pytest.approx(1.0) and r.hm[0] == 0.0
    assert np.allclose(r.class_accuracy, [0.0, 0.0, 1.0])


def test_ties_go_to_lower_column_and_first_best_beta_wins():
    nearest = nearest_seen_unseen(DIST, SEEN)
    # at beta 0.5 videos 0, 2, 3 tie between a seen and the unseen class: argmin takes the lower column
    assert predict_columns(nearest, 0.5).tolist() == [0, 1, 1, 0, 2]
    r = metrics([0.0, 0.5, 1.0])
    assert r.hm.tolist() == pytest.approx([0.6, 0.6, 0.0])
    assert r.best == 0 and r.beta == 0.0  # first maximum


def test_zsl_ignores_seen_classes():
    r = metrics([0.0])
    assert r.zsl == pytest.approx(1.0)  # both class-7 videos are nearest to 7 among unseen classes
    assert np.isnan(r.zsl_class_accuracy[:2]).all()


def test_harmonic_mean_zero_when_both_zero():
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(0.5, 0.0) == 0.0
    assert harmonic_mean(0.4, 0.6) == pytest.approx(0.48)


def test_ausuc_of_known_curve():
    # (U, S) corners (0, .75) -> (.5, .75) -> (1, 0): 0.5*0.75 + 0.5*0.75/2
    assert metrics([0.0]).ausuc == pytest.approx(0.5625)
    assert area_under_curve([0.0, 1.0], [1.0, 0.0]) == pytest.approx(0.5)
    assert area_under_curve([1.0, 0.0, 0.5], [0.0, 1.0, 1.0]) == pytest.approx(0.75)  # unordered input


def brute_force(dist, labels, class_ids, seen, betas):
    """The straightforward reference computation: full matrix + beta, argmin, loops over classes."""
    out = []
    for beta in betas:
        d = dist.astype(np.float32) + np.where(seen, np.float32(beta), np.float32(0))[None, :]
        pred = class_ids[np.argmin(d, axis=1)]
        accs = {c: np.mean(pred[labels == c] == c) for c in class_ids if (labels == c).any()}
        s = np.mean([accs[c] for c in class_ids[seen] if c in accs])
        u = np.mean([accs[c] for c in class_ids[~seen] if c in accs])
        out.append((s, u, 0.0 if s + u == 0 else 2 * s * u / (s + u)))
    unseen_ids = class_ids[~seen]
    pz = unseen_ids[np.argmin(dist[:, ~seen], axis=1)]
    zsl = np.mean([np.mean(pz[labels == c] == c) for c in unseen_ids if (labels == c).any()])
    return np.array(out), zsl


@pytest.mark.parametrize("seed", range(5))
def test_fast_path_equals_straightforward_computation(seed):
    rng = np.random.default_rng(seed)
    C, N = 12, 400
    class_ids = np.sort(rng.choice(50, C, replace=False))
    seen = rng.random(C) < 0.6
    seen[0], seen[-1] = True, False
    labels = class_ids[rng.integers(0, C, N)]
    # rounded distances create many exact ties between seen+beta and unseen
    dist = np.round(rng.random((N, C)) * 4, 1).astype(np.float32)
    betas = np.linspace(0, 5, 76)
    r = gzsl_metrics(nearest_seen_unseen(dist, seen), labels, class_ids, seen, betas)
    ref, zsl = brute_force(dist, labels, class_ids, seen, betas)
    np.testing.assert_allclose(r.seen, ref[:, 0], atol=1e-12)
    np.testing.assert_allclose(r.unseen, ref[:, 1], atol=1e-12)
    np.testing.assert_allclose(r.hm, ref[:, 2], atol=1e-12)
    assert r.zsl == pytest.approx(zsl)
    assert r.best == int(np.argmax(ref[:, 2]))


def test_exact_ausuc_upper_bounds_grid_curve():
    rng = np.random.default_rng(3)
    dist = rng.random((300, 8)).astype(np.float32)
    seen = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    labels = rng.integers(0, 8, 300)
    nearest = nearest_seen_unseen(dist, seen)
    r = gzsl_metrics(nearest, labels, np.arange(8), seen, np.linspace(-2, 2, 2001))
    # a dense beta grid from "all seen" to "all unseen" traces the same curve
    grid_area = area_under_curve(np.r_[r.unseen, r.unseen[-1]], np.r_[r.seen, 0.0])
    assert r.ausuc == pytest.approx(grid_area, abs=2e-3)


def test_curve_summary_by_hand():
    c = curve_summary(nearest_seen_unseen(DIST, SEEN), LABELS, CLASS_IDS, SEEN)
    # beta -> -inf: videos 0 and 2 right among seen -> class 2: 1/2, class 5: 1/1
    assert c["seen_only"] == pytest.approx(0.75)
    assert c["zsl"] == pytest.approx(metrics([0.0]).zsl) == pytest.approx(1.0)
    # flips at unseen - seen distance: video 4 at -0.8 (U 0 -> 0.5), videos 0, 2, 3 at 0.5 (S -> 0, U -> 1)
    assert c["curve"]["unseen"] == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert c["curve"]["seen"] == pytest.approx([0.75, 0.75, 0.0, 0.0])
    assert c["ausuc"] == pytest.approx(0.5 * 0.75 + 0.5 * 0.75 / 2)
    assert c["hm_best"] == pytest.approx(0.6)  # at (U 0.5, S 0.75)


def test_curve_summary_subsamples_keeping_both_ends():
    rng = np.random.default_rng(0)
    dist = rng.random((500, 6)).astype(np.float32)
    seen = np.array([True, True, True, False, False, False])
    labels = rng.integers(0, 6, 500)
    nearest = nearest_seen_unseen(dist, seen)
    full = curve_summary(nearest, labels, np.arange(6), seen, max_points=10**6)
    few = curve_summary(nearest, labels, np.arange(6), seen, max_points=20)
    assert len(full["curve"]["unseen"]) > 20 and len(few["curve"]["unseen"]) == 20
    for k in ("unseen", "seen"):
        assert few["curve"][k][0] == full["curve"][k][0] and few["curve"][k][-1] == full["curve"][k][-1]
    assert few["ausuc"] == full["ausuc"]
    with pytest.raises(ValueError):
        curve_summary(nearest, labels, np.arange(6), np.ones(6, bool))
