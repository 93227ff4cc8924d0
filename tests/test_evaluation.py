"The evaluation chapter's module: corruptions, the memorisation detector, and the Parzen-window likelihood."
import math

import pytest
import torch

from deepgen.evaluation import (add_noise, blur, drop_modes, fit_parzen_bandwidth, memorize, nn_distance,
                                one_per_class, parzen_log_prob, to_unit)


def images(n=20, size=28, seed=0):
    return torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def high_freq_energy(x):
    "Energy of the upper half of the spatial frequencies (2D FFT), per image, summed."
    f = torch.fft.fftshift(torch.fft.fft2(x.float() - x.float().mean((-2, -1), keepdim=True)), dim=(-2, -1))
    h, w = x.shape[-2:]
    fy, fx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    return f.abs().square()[..., (fy.abs() > h // 4) | (fx.abs() > w // 4)].sum().item()


@pytest.mark.parametrize("corrupt", [blur, add_noise])
def test_corruptions_keep_shape_dtype_and_zero_is_identity(corrupt):
    x = images()
    assert torch.equal(corrupt(x, 0), x) and torch.equal(corrupt(x, 0.0), x)
    for strength in (0.5, 1.5):
        out = corrupt(x, strength)
        assert out.shape == x.shape and out.dtype == torch.uint8 and not torch.equal(out, x)


def test_blur_removes_high_frequencies_monotonically():
    x = images()
    energies = [high_freq_energy(blur(x, s)) for s in (0, 0.7, 1.5, 3.0)]
    assert all(a > b for a, b in zip(energies, energies[1:]))
    assert energies[-1] < 0.01 * energies[0]


def test_noise_level_and_determinism():
    grey = torch.full((300, 1, 28, 28), 100, dtype=torch.uint8)
    measured = (add_noise(grey, 0.05).float() - 100).std().item() / 255
    assert abs(measured - 0.05) < 0.001
    assert torch.equal(add_noise(images(), 0.2, seed=3), add_noise(images(), 0.2, seed=3))
    assert not torch.equal(add_noise(images(), 0.2, seed=3), add_noise(images(), 0.2, seed=4))


def test_mode_dropping_keeps_only_requested_classes_and_the_count():
    x, y = images(200), torch.arange(200) % 10
    for keep in ([0, 1, 2, 3, 4], [7]):
        out, out_y = drop_modes(x, y, keep, 50, seed=1)
        assert len(out) == 50 and set(out_y.tolist()) == set(keep)
        rows = (x.flatten(1)[None] == out.flatten(1)[:, None]).all(-1)  # which source rows each output copies
        assert torch.isin(y[rows.float().argmax(1)], torch.tensor(keep)).all()
    assert len(torch.unique(drop_modes(x, y, [0, 1, 2, 3, 4], 50)[0], dim=0)) == 50  # 100 available: no repeats
    a, b = drop_modes(x, y, [3, 5], 30, seed=2), drop_modes(x, y, [3, 5], 30, seed=2)
    assert torch.equal(a[0], b[0])


def test_one_per_class_and_memorize():
    x, y = images(100), torch.arange(100) % 10
    score = torch.randn(100, generator=torch.Generator().manual_seed(0))
    out, out_y = one_per_class(x, y, 35, score=score)
    assert len(out) == 35 and len(torch.unique(out, dim=0)) == 10
    for c in range(10):
        assert torch.equal(out[c], x[y == c][score[y == c].argmax()]) and out_y[c] == c
    copies = memorize(x, 40, seed=1)
    assert torch.equal(copies, memorize(x, 40, seed=1)) and len(torch.unique(copies, dim=0)) == 40


def test_nn_distance_zero_for_copies_and_matches_brute_force():
    ref = images(60, seed=1)
    queries = torch.cat([ref[[0, 17, 59]], images(5, seed=2)])
    d = nn_distance(queries, ref, batch=3, ref_batch=11)
    assert (d[:3] == 0).all() and (d[3:] > 0).all()
    brute = ((queries.double()[:, None] - ref.double()[None]) / 255).flatten(2).norm(dim=2).min(1).values
    assert torch.allclose(d, brute, atol=1e-9)


def test_parzen_one_centre_is_the_gaussian_log_density():
    g = torch.Generator().manual_seed(0)
    centre, x = torch.rand(1, 784, generator=g, dtype=torch.float64), torch.rand(10, 784, generator=g, dtype=torch.float64)
    for sigma in (0.05, 0.3, 2.0):
        closed = (-((x - centre) ** 2).sum(1) / (2 * sigma ** 2) - 784 / 2 * math.log(2 * math.pi * sigma ** 2))
        assert torch.allclose(parzen_log_prob(x, centre, sigma), closed, rtol=1e-9, atol=1e-6)


def test_parzen_mixture_grid_and_finite_in_high_dimension():
    g = torch.Generator().manual_seed(1)
    centres, x = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    sig = torch.tensor([0.5, 1.0], dtype=torch.float64)
    comps = torch.distributions.MultivariateNormal(centres, torch.eye(3, dtype=torch.float64))
    by_hand = torch.logsumexp(comps.log_prob(x[:, None]), 1) - math.log(5)
    assert torch.allclose(parzen_log_prob(x, centres, sig)[:, 1], by_hand, atol=1e-10)
    far = parzen_log_prob(torch.ones(2, 784), torch.zeros(3, 784), 0.01)  # every kernel underflows in float64 exp
    assert torch.isfinite(far).all()


def test_bandwidth_selection_finds_the_data_scale():
    g = torch.Generator().manual_seed(2)
    sigmas = torch.logspace(-2, 1, 31, dtype=torch.float64)
    picks = [fit_parzen_bandwidth(torch.randn(500, 2, generator=g) * s, torch.randn(500, 2, generator=g) * s, sigmas)[0]
             for s in (0.1, 1.0)]
    assert 0.01 < picks[0] < 0.1 and 0.1 < picks[1] < 1.0 and 5 < picks[1] / picks[0] < 20


def test_to_unit_ranges_and_determinism():
    x = torch.tensor([0, 128, 255], dtype=torch.uint8)
    assert torch.allclose(to_unit(x), (x.double() + 0.5) / 256)
    u = to_unit(images(), seed=3)
    assert u.min() >= 0 and u.max() < 1 and torch.equal(u, to_unit(images(), seed=3))
    assert ((u * 256).floor() == images().double()).all()
