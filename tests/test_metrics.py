"Metric sanity: closed forms, identities, and the offline Inception network."
import numpy as np
import pytest
import scipy.linalg
import torch

from deepgen.data import sample_toy, toy_density
from deepgen.metrics import (InceptionFeatures, feature_stats, frechet_distance, gaussian_grid_modes, hist_kl_2d,
                             inception_score, mode_coverage, nats_to_bpd, precision_recall)

G = torch.Generator().manual_seed(0)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    f = torch.randn(400, 16, generator=G)
    s = feature_stats(f)
    assert frechet_distance(s, s) < 1e-8
    shifts = [frechet_distance(s, feature_stats(f + d)) for d in (0.1, 0.5, 1.0)]
    assert 0 < shifts[0] < shifts[1] < shifts[2]
    assert abs(shifts[2] - 16.0) < 1e-6  # a pure mean shift of 1 in 16 dims


def test_fid_matches_scipy_sqrtm_reference():
    a, b = torch.randn(300, 10, generator=G), torch.randn(300, 10, generator=G) @ torch.randn(10, 10, generator=G)
    sa, sb = feature_stats(a), feature_stats(b)
    s1, s2 = sa["sigma"].numpy(), sb["sigma"].numpy()
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    ref = float(((sa["mu"] - sb["mu"]) ** 2).sum()) + np.trace(s1 + s2 - 2 * covmean)
    assert abs(frechet_distance(sa, sb) - ref) < 1e-6 * max(1, ref)


def test_precision_recall_of_identical_sets_is_one_and_collapse_hurts_recall():
    r = torch.randn(300, 6, generator=G)
    assert precision_recall(r, r) == (1.0, 1.0)
    collapsed = r[:5].repeat(60, 1)
    p, rec = precision_recall(r, collapsed)
    assert p == 1.0 and rec < 0.2


def test_inception_score_bounds():
    assert abs(inception_score(torch.eye(10)) - 10) < 1e-9
    assert abs(inception_score(torch.full((50, 10), 0.1)) - 1) < 1e-9


def test_bits_per_dim_conversion():
    # a uniform density over the 256 levels of each pixel scaled to [-1, 1] (density 1/2) is exactly 8 bits/dim
    d = 784
    assert abs(nats_to_bpd(d * np.log(2.0), d, data_range=2.0) - 8.0) < 1e-9


def test_hist_kl_is_zero_for_same_samples_and_positive_otherwise():
    x = sample_toy("8gaussians", 5000, seed=0)
    bounds = toy_density("8gaussians")[1]
    assert hist_kl_2d(x, x, bounds) < 1e-8
    assert hist_kl_2d(x, sample_toy("checkerboard", 5000), bounds) > 1.0


def test_mode_counting_on_25_gaussians():
    mix, _ = toy_density("25gaussians")
    full = gaussian_grid_modes(sample_toy("25gaussians", 5000, seed=1), mix.means, mix.std)
    assert full["modes"] == 25 and full["high_quality"] > 0.98 and full["kl_uniform"] < 0.05
    collapsed = gaussian_grid_modes(mix.means[:3].repeat(100, 1), mix.means, mix.std)
    assert collapsed["modes"] == 3 and abs(collapsed["kl_uniform"] - np.log(25 / 3)) < 1e-6


def test_mode_coverage_ignores_off_mode_samples():
    out = mode_coverage(torch.tensor([0, 1, -1, -1]), 4)
    assert out["modes"] == 2 and out["high_quality"] == 0.5


@pytest.fixture(scope="module")
def inception():
    return InceptionFeatures()


def test_inception_features_offline(inception):
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=G)
    with torch.inference_mode():
        f = inception(x)
        grey = inception(x[:, :1])
    assert f.shape == (2, 2048) and grey.shape == (2, 2048) and torch.isfinite(f).all()
    with torch.inference_mode():  # [-1, 1] floats and uint8 describe the same images
        assert torch.allclose(inception(x.float() / 127.5 - 1), f, atol=1e-3)
