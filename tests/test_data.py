"Toy densities, image datasets, and clear errors for missing or damaged data."
import math
import shutil

import pytest
import torch

from conftest import ROOT
from deepgen.data import (IMAGE_DATASETS, TOYS, DataError, gaussian_log_prob, load_images, sample_toy, to_float,
                          toy_grid, toy_log_prob)


@pytest.mark.parametrize("name", [n for n in TOYS if not n.endswith("_1d")])
def test_toy_densities_integrate_to_one(name):
    logp, area, _ = toy_grid(name, 150)
    assert abs(float(logp.exp().sum() * area) - 1) < 0.02


def test_bimodal_1d_integrates_to_one_and_is_asymmetric():
    xs = torch.linspace(-2, 2, 4001)[:, None]
    p = toy_log_prob("bimodal_1d", xs).exp()
    assert abs(float(p.sum() * (xs[1] - xs[0])) - 1) < 1e-3
    assert p[xs[:, 0].sub(-1).abs().argmin()] > 2 * p[xs[:, 0].sub(1).abs().argmin()]


def test_gaussian_mixture_log_prob_is_exact():
    # 8 Gaussians, σ = 0.1, radius 2: at a centre the density is 1/8 · N(0; 0, σ²I) (others are ~40σ away)
    centre = torch.tensor([[2.0, 0.0]])
    expected = math.log(1 / 8) - math.log(2 * math.pi * 0.1**2)
    assert abs(float(toy_log_prob("8gaussians", centre)) - expected) < 1e-4


def test_gaussian_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    x, mean, log_var = (torch.randn(4, 3, 5, generator=g, dtype=torch.float64) for _ in range(3))
    ref = torch.distributions.Normal(mean, (0.5 * log_var).exp()).log_prob(x)
    assert torch.allclose(gaussian_log_prob(x, mean, log_var, dims=None), ref, atol=1e-12)
    assert torch.allclose(gaussian_log_prob(x, mean, log_var, dims=(1, 2)), ref.sum((1, 2)), atol=1e-12)
    # a float log-variance keeps the dtype of x: a float64 density is not rounded through float32
    iso = torch.distributions.Normal(mean, 0.3).log_prob(x).sum(-1)
    assert torch.allclose(gaussian_log_prob(x, mean, 2 * math.log(0.3)), iso, atol=1e-12)


def test_toy_samples_follow_the_seed():
    assert torch.equal(sample_toy("swiss_roll", 100, seed=3), sample_toy("swiss_roll", 100, seed=3))
    assert not torch.equal(sample_toy("swiss_roll", 100, seed=3), sample_toy("swiss_roll", 100, seed=4))


def test_checkerboard_samples_lie_where_the_density_is():
    x = sample_toy("checkerboard", 2000)
    assert torch.isfinite(toy_log_prob("checkerboard", x)).all()


@pytest.mark.parametrize("name, shape, count", [("mnist", (1, 28, 28), 10000), ("fashion", (1, 28, 28), 10000),
                                                 ("cifar10", (3, 32, 32), 10000), ("celeba64", (3, 64, 64), 1000)])
def test_image_sets_have_expected_shapes_and_ranges(name, shape, count):
    ds = load_images(name, "test")
    assert ds.x.dtype == torch.uint8 and tuple(ds.x.shape[1:]) == shape and len(ds) == count
    assert int(ds.x.min()) == 0 and int(ds.x.max()) == 255
    assert len(ds.y) == count and ds.source
    f = to_float(ds.x[:10])
    assert f.min() >= -1 and f.max() <= 1


def test_labels_are_complete():
    assert torch.bincount(load_images("mnist", "test").y).tolist().__len__() == 10
    assert load_images("cifar10", "train").y.bincount().tolist() == [5000] * 10
    assert load_images("celeba64", "test").y.shape == (1000, 40)


def test_stacked_mnist_has_rgb_digits_and_1000_mode_labels():
    ds = load_images("stacked_mnist", "train", stacked_n=500, seed=1)
    assert ds.x.shape == (500, 3, 28, 28) and 0 <= int(ds.y.min()) and int(ds.y.max()) < 1000
    again = load_images("stacked_mnist", "train", stacked_n=500, seed=1)
    assert torch.equal(ds.x, again.x)


def test_missing_dataset_is_a_one_line_error_with_a_fix(empty_data):
    with pytest.raises(DataError) as err:
        load_images("mnist", "train")
    msg = str(err.value)
    assert "\n" not in msg and "mnist" in msg and "deepgen-data fetch" in msg


def test_truncated_file_is_a_one_line_error(empty_data):
    raw = empty_data / "MNIST" / "raw"
    shutil.copytree(ROOT / "data" / "MNIST" / "raw", raw)
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[: 1000])
    with pytest.raises(DataError) as err:
        load_images("mnist", "train")
    assert "\n" not in str(err.value) and "corrupt" in str(err.value)


def test_unknown_dataset_is_rejected():
    with pytest.raises(DataError):
        load_images("imagenet")
    assert set(IMAGE_DATASETS) >= {"mnist", "cifar10", "celeba64"}
