"The diffusion chapter's module: schedules, q_sample, the posterior, the exact denoising integral, the loss, samplers."
import math

import pytest
import torch

from deepgen.diffusion import (NoiseSchedule, TimeMLP, ddim_sample, ddim_timesteps, ddpm_sample, denoising_density,
                               eps_loss, l_simple, linear_schedule, posterior_coefficients, vp_alpha_bar, vp_schedule)
from deepgen.train import TrainConfig, train

F64 = torch.float64


def normal_pdf(x, mean, var):
    return torch.exp(-0.5 * (x - mean) ** 2 / var) / math.sqrt(2 * math.pi * var)


def gaussian_eps(schedule, m, s):
    "Exact E[ε | x_t] for data N(m, s²)."
    def model(x, t):
        ab = schedule.alpha_bar[t].to(x.dtype).view(-1, *[1] * (x.dim() - 1))
        return (1 - ab).sqrt() * (x - ab.sqrt() * m) / (ab * s**2 + 1 - ab)
    return model


def test_linear_schedule_values():
    s = linear_schedule(1000)
    assert s.T == 1000 and s.beta.shape == s.alpha.shape == s.alpha_bar.shape == (1001,)
    assert s.beta[0] == 0 and s.alpha_bar[0] == 1
    assert s.beta[1].item() == pytest.approx(1e-4, abs=1e-12) and s.beta[1000].item() == pytest.approx(0.02, abs=1e-12)
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all()  # ᾱ strictly decreasing
    assert torch.allclose(s.alpha_bar, torch.cumprod(1 - s.beta, 0))
    assert s.alpha_bar[-1] < 1e-4
    with pytest.raises(ValueError):
        NoiseSchedule([0.1, 1.0])


@pytest.mark.parametrize("T", [2, 4])
def test_vp_schedule_closed_form(T):
    # ᾱ(τ) = exp(−0.1τ − 9.95τ²)  ⇒  β_t = 1 − exp(−0.1/T − 9.95(2t − 1)/T²)
    expected = torch.tensor([1 - math.exp(-0.1 / T - 9.95 * (2 * t - 1) / T**2) for t in range(1, T + 1)], dtype=F64)
    s = vp_schedule(T)
    assert torch.allclose(s.beta[1:], expected, rtol=1e-12)
    assert torch.allclose(s.alpha_bar, vp_alpha_bar(torch.arange(T + 1, dtype=torch.float64) / T), rtol=1e-12)
    assert s.alpha_bar[-1].item() == pytest.approx(math.exp(-10.05), rel=1e-10)


def test_linear_schedule_discretises_vp_sde():
    gap = (linear_schedule(1000).alpha_bar - vp_alpha_bar(torch.arange(1001) / 1000)).abs().max()
    assert gap < 5e-3


def test_q_sample_moments():
    s = linear_schedule(100)
    g = torch.Generator().manual_seed(0)
    x0 = 1.0 + 0.5 * torch.randn(50000, 1, generator=g, dtype=F64)
    t = 40
    xt = s.q_sample(x0, t, torch.randn(50000, 1, generator=g, dtype=F64))
    ab = s.alpha_bar[t].item()
    assert xt.mean().item() == pytest.approx(math.sqrt(ab), abs=0.01)
    assert xt.var().item() == pytest.approx(0.25 * ab + 1 - ab, abs=0.03)
    # per-example t broadcasts; predict_x0 inverts q_sample
    tt = torch.tensor([1, 50, 100])
    x, eps = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    assert torch.allclose(s.predict_x0(s.q_sample(x, tt, eps), tt, eps), x, atol=1e-4)


@pytest.mark.parametrize("t", [1, 2, 7, 50])
def test_posterior_equals_bayes(t):
    s = linear_schedule(50)
    ab_prev, a, b = s.alpha_bar[t - 1].item(), s.alpha[t].item(), s.beta[t].item()
    x0, xt = torch.tensor([[0.8]], dtype=F64), torch.tensor([[-0.3]], dtype=F64)
    if t == 1:  # x_0 is known: a point mass
        mean, var = 0.8, 0.0
    else:  # prior N(√ᾱ_{t−1} x0, 1 − ᾱ_{t−1}) × likelihood N(x_t; √α_t x_{t−1}, β_t)
        var = 1 / (1 / (1 - ab_prev) + a / b)
        mean = var * (math.sqrt(ab_prev) * 0.8 / (1 - ab_prev) + math.sqrt(a) * -0.3 / b)
    assert s.posterior_mean(x0, xt, t).item() == pytest.approx(mean, abs=1e-10)
    assert s.post_var[t].item() == pytest.approx(var, abs=1e-12)
    g = torch.Generator().manual_seed(1)
    draws = s.posterior_sample(x0.expand(40000, 1), xt.expand(40000, 1), t, torch.randn(40000, 1, generator=g, dtype=F64))
    assert draws.mean().item() == pytest.approx(mean, abs=0.01)
    assert draws.var().item() == pytest.approx(var, abs=0.01 * max(var, 0.01))


def test_posterior_coefficients_are_per_step():
    # the x_t coefficient uses √α_t: with ᾱ_{t−1} = 0.5, ᾱ_t = 0.25, α_t = 0.5, √ᾱ_t would give 0.5·0.5/0.75
    c0, ct, var = posterior_coefficients(0.5, 0.25)
    assert ct.item() == pytest.approx(math.sqrt(0.5) * 0.5 / 0.75)
    assert c0.item() == pytest.approx(math.sqrt(0.5) * 0.5 / 0.75) and var.item() == pytest.approx(0.5 * 0.5 / 0.75)


@pytest.mark.parametrize("ab_s,ab_t", [(0.6, 0.3), (0.95, 0.9), (0.2, 0.01)])
def test_denoising_density_gaussian_closed_form(ab_s, ab_t):
    m, sd = 0.3, 0.5
    grid = torch.linspace(-7, 7, 2801, dtype=F64)
    log_p0 = lambda x: torch.log(normal_pdf(x, m, sd**2))
    x_t = torch.tensor([-1.2, 0.0, 2.0])
    dens = denoising_density(grid, x_t, ab_s, ab_t, log_p0)
    assert dens.shape == (3, 2801)
    var_s = ab_s * sd**2 + 1 - ab_s
    alpha = ab_t / ab_s
    cov, var_t = math.sqrt(alpha) * var_s, alpha * var_s + 1 - alpha
    for row, xt in zip(dens, x_t.tolist()):
        mean = math.sqrt(ab_s) * m + cov / var_t * (xt - math.sqrt(ab_t) * m)
        closed = normal_pdf(grid, mean, var_s - cov**2 / var_t)
        assert (row - closed).abs().max() < 1e-7
        assert row.sum().item() * (grid[1] - grid[0]).item() == pytest.approx(1.0, abs=1e-6)


def test_denoising_density_to_data_is_posterior_and_bimodal():
    # s = 0: q(x_0 | x_t) of a symmetric two-point-like mixture at x_t = 0 has two modes
    grid = torch.linspace(-3, 3, 1201, dtype=F64)
    log_p0 = lambda x: torch.logaddexp(torch.log(normal_pdf(x, -1, 0.01)), torch.log(normal_pdf(x, 1, 0.01)))
    dens = denoising_density(grid, torch.tensor([0.0]), 1.0, 0.5, log_p0)[0]
    assert dens[grid < 0].sum() == pytest.approx(dens[grid > 0].sum().item(), rel=1e-6)
    assert dens[(grid.abs() - 1).abs() < 0.3].sum() * (grid[1] - grid[0]) > 0.99


def test_ddim_recovers_point_mass():
    s = linear_schedule(200)
    x_star = torch.tensor([0.4, -1.3], dtype=F64)
    eps = lambda x, t: (x - s.alpha_bar[t].view(-1, 1).to(x) .sqrt() * x_star) / (1 - s.alpha_bar[t].view(-1, 1).to(x)).sqrt()
    for steps in (1, 10, 200):
        out = ddim_sample(eps, s, torch.randn(30, 2, dtype=F64), steps=steps)
        assert torch.allclose(out, x_star.expand(30, 2), atol=1e-9)


def test_samplers_reach_gaussian_data():
    s = linear_schedule(1000)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(20000, 1, generator=g, dtype=F64)
    model = gaussian_eps(s, -0.7, 0.3)
    for out in (ddpm_sample(model, s, x_T, generator=g), ddim_sample(model, s, x_T, steps=1000)):
        assert out.mean().item() == pytest.approx(-0.7, abs=0.01) and out.std().item() == pytest.approx(0.3, abs=0.01)


def test_ddim_eta1_all_steps_is_ddpm_and_seeds():
    s = linear_schedule(100)
    model = gaussian_eps(s, 0.5, 1.2)
    x_T = torch.randn(64, 3, dtype=F64)
    a = ddpm_sample(model, s, x_T, generator=torch.Generator().manual_seed(7))
    b = ddim_sample(model, s, x_T, steps=100, eta=1.0, generator=torch.Generator().manual_seed(7))
    c = ddpm_sample(model, s, x_T, generator=torch.Generator().manual_seed(7))
    d = ddpm_sample(model, s, x_T, generator=torch.Generator().manual_seed(8))
    assert torch.allclose(a, b, atol=1e-8) and torch.equal(a, c) and not torch.allclose(a, d)
    assert torch.equal(ddim_sample(model, s, x_T, steps=10), ddim_sample(model, s, x_T, steps=10))


def test_ddim_timesteps():
    assert ddim_timesteps(1000, 10) == list(range(100, 1001, 100))
    assert ddim_timesteps(8, 8) == list(range(1, 9))
    assert len(set(ddim_timesteps(1000, 999))) == 999
    with pytest.raises(ValueError):
        ddim_timesteps(10, 11)


def test_sampler_shapes_and_clipping():
    torch.manual_seed(0)
    s = linear_schedule(50)
    net = TimeMLP(3, hidden=16, depth=2)
    x_T = torch.randn(7, 3)
    for out in (ddpm_sample(net, s, x_T, clip=1.0), ddim_sample(net, s, x_T, steps=5, clip=1.0)):
        assert out.shape == (7, 3) and out.dtype == torch.float32 and torch.isfinite(out).all()
        assert out.abs().max() <= 1.0 + 1e-5  # the last step returns the clipped x̂_0


def test_l_simple_decreases_and_is_seeded():
    s = linear_schedule(100)
    x = torch.randn(2000, 2) * 0.3 + torch.tensor([1.0, -1.0])

    def run():
        torch.manual_seed(0)
        net = TimeMLP(2, hidden=64, depth=2)
        res = train(net, eps_loss(s), x, TrainConfig(steps=150, batch=256, lr=3e-3, ema=0, log_every=50, ckpt_every=0))
        return net, res.history

    net, hist = run()
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"]
    torch.manual_seed(1)
    assert l_simple(net, x, s).item() < 0.6  # a fresh ε-net scores about 1
    assert [h["loss"] for h in run()[1]] == [h["loss"] for h in hist]


def test_eps_loss_transform_for_images():
    s = linear_schedule(50)
    seen = {}

    def model(x, t):
        seen["x"], seen["t"] = x, t
        return torch.zeros_like(x)

    pixels = torch.randint(0, 256, (4, 1, 5, 5), dtype=torch.uint8)
    loss = eps_loss(s, lambda u: u.float() / 127.5 - 1)(model, pixels)
    assert seen["x"].dtype == torch.float32 and seen["t"].min() >= 1 and seen["t"].max() <= 50
    assert 0.5 < loss.item() < 1.5  # E‖ε‖² = 1 for a zero predictor


def test_ddim_clip_matches_a_hand_computation():
    "Two DDIM steps (T = 2, η = 0) with ε_θ(x) = x/2: x̂_0 clamped to ±clip, ε recomputed from it; clip=None leaves both."
    sched = NoiseSchedule([0.3, 0.5])  # ᾱ_1 = 0.7, ᾱ_2 = 0.35
    a1, a2 = 0.7, 0.35
    model = lambda x, t: 0.5 * x
    x_T = torch.tensor([[1.0], [-2.0], [0.8]], dtype=F64)

    def by_hand(clip):
        x = x_T.clone()
        for ab_t, ab_s in ((a2, a1), (a1, 1.0)):
            x0 = (x - math.sqrt(1 - ab_t) * 0.5 * x) / math.sqrt(ab_t)
            eps = 0.5 * x
            if clip is not None:
                x0 = x0.clamp(-clip, clip)
                eps = (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
            x = math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * eps
        return x

    clipped, free = ddim_sample(model, sched, x_T, steps=2, clip=0.8), ddim_sample(model, sched, x_T, steps=2)
    assert torch.allclose(clipped, by_hand(0.8), atol=1e-12) and torch.allclose(free, by_hand(None), atol=1e-12)
    assert (clipped - free).abs().max() > 0.1 and free.abs().max() > 1  # clipping matters, and ±1 would not be 0.8
    assert ((clipped.abs() < 0.8 - 1e-3) & (clipped != free)).any()  # an x̂_0 clipped at step 1 only: the ε recompute shows
