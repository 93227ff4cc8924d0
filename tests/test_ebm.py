"Energy-based models: Langevin on a known energy, replay buffer, DSM and NCE closed forms, energy nets, seeds."
import math

import pytest
import torch

from deepgen.ebm import (ConvEnergy, EnergyMLP, GaussianEnergy, ReplayBuffer, dsm_loss, fit_gaussian, langevin,
                         ml_loss, nce_loss, score, uniform_noise)


def quadratic(sigma):
    return lambda x: (x**2).sum(1) / (2 * sigma**2)


def test_langevin_converges_to_the_gaussian_of_a_quadratic_energy():
    torch.manual_seed(0)
    sigma, alpha = 0.5, 0.01
    x = langevin(quadratic(sigma), torch.full((4000, 1), 3.0), steps=600, step_size=alpha)
    target = sigma**2 / (1 - alpha / (2 * sigma**2))  # stationary variance of the unadjusted chain
    assert abs(x.mean()) < 0.03
    assert abs(x.var() / target - 1) < 0.08
    assert not x.requires_grad


def test_langevin_without_noise_is_gradient_descent_and_clamp_holds():
    x = langevin(quadratic(1.0), torch.full((5, 2), 2.0), steps=300, step_size=0.05, noise=0.0)
    assert torch.allclose(x, torch.full_like(x, 2.0 * 0.95**300))
    y = langevin(quadratic(0.1), torch.rand(10, 3) * 4 - 2, steps=3, step_size=0.1, clamp=(-1, 1))
    assert y.abs().max() <= 1


def test_langevin_leaves_parameter_gradients_alone_and_works_under_no_grad():
    net = EnergyMLP(2, 8, 2)
    with torch.no_grad():
        out = langevin(net, torch.randn(4, 2), steps=3, step_size=0.01)
    assert out.shape == (4, 2) and all(p.grad is None for p in net.parameters())


def test_langevin_is_deterministic_with_a_seed():
    net = EnergyMLP(2, 8, 2)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(langevin(net, torch.randn(16, 2), steps=5, step_size=0.01))
    assert torch.equal(*runs)


def test_replay_buffer_keeps_size_and_reinit_fraction():
    torch.manual_seed(0)
    buf = ReplayBuffer(lambda n: torch.zeros(n, 3), size=200, reinit=0.05)
    buf.x.fill_(1.0)
    x0, idx = buf.sample(40000)
    assert len(buf) == 200 and x0.shape == (40000, 3)
    assert abs((x0[:, 0] == 0).float().mean().item() - 0.05) < 0.005
    x0, idx = buf.sample(8)
    buf.push(x0 + 5, idx)
    assert len(buf) == 200 and torch.equal(buf.x[idx], x0 + 5)


def test_ml_loss_phases_have_the_right_sign():
    e = GaussianEnergy(1, mu=0.0, sigma=1.0)
    data, neg = torch.full((8, 1), 2.0), torch.full((8, 1), -2.0)
    ml_loss(e, data, neg).backward()
    assert e.mu.grad < 0  # descending moves μ towards the data at +2 (and away from the negatives)
    e.zero_grad()
    ml_loss(e, data, data).backward()
    assert abs(e.mu.grad) < 1e-7 and abs(e.log_sigma.grad) < 1e-7


def test_score_is_minus_energy_gradient():
    x = torch.randn(6, 2)
    assert torch.allclose(score(quadratic(0.5), x), -x / 0.25)


def test_dsm_minimiser_is_the_smoothed_gaussian_score():
    sigma_n = 0.5
    x = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
    def loss_at(a):
        torch.manual_seed(1)
        return dsm_loss(GaussianEnergy(1, sigma=a**-0.5), x, sigma_n).item()
    grid = torch.linspace(0.5, 1.1, 61)
    best = grid[torch.tensor([loss_at(a.item()) for a in grid]).argmin()].item()
    assert abs(best - 1 / (1 + sigma_n**2)) < 0.03


def test_dsm_training_decreases_the_loss():
    torch.manual_seed(0)
    net, x = EnergyMLP(2, 32, 2), torch.randn(512, 2) * 0.3 + 1
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    def loss():
        torch.manual_seed(5)
        return dsm_loss(net, x, 0.2)
    first = loss().item()
    for _ in range(100):
        opt.zero_grad(), loss().backward(), opt.step()
    assert loss().item() < 0.8 * first


def test_nce_recovers_a_gaussian():
    torch.manual_seed(0)
    e = GaussianEnergy(1)
    q = torch.distributions.MultivariateNormal(torch.zeros(1), 4 * torch.eye(1))
    x = 1.5 + 0.5 * torch.randn(20000, 1)
    opt = torch.optim.Adam(e.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        nce_loss(e, x[torch.randint(len(x), (512,))], q).backward()
        opt.step()
    assert abs(e.mu.item() - 1.5) < 0.05 and abs(e.log_sigma.exp().item() - 0.5) < 0.05
    assert abs(e.c.item() - math.log(math.sqrt(2 * math.pi) * 0.5)) < 0.1  # self-normalised


def test_fit_gaussian_matches_moments():
    x = torch.randn(5000, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 3.0]) + 2
    g = fit_gaussian(x)
    assert torch.allclose(g.mean, torch.tensor([2.0, 2.0]), atol=0.1)
    assert torch.allclose(g.covariance_matrix.diagonal(), torch.tensor([1.0, 9.0]), rtol=0.1)


@pytest.mark.parametrize("net,shape", [(EnergyMLP(2, 16), (2,)), (EnergyMLP(1, 16), (1,)),
                                       (ConvEnergy(1, 4, 28), (1, 28, 28)), (ConvEnergy(3, 4, 32), (3, 32, 32))])
def test_energy_nets_return_one_energy_per_example(net, shape):
    assert net(torch.randn(7, *shape)).shape == (7,)


def test_uniform_noise_respects_the_box():
    x = uniform_noise(2000, (1, 4, 4))
    assert x.shape == (2000, 1, 4, 4) and x.min() >= -1 and x.max() <= 1 and abs(x.mean()) < 0.02


def test_short_run_training_step_is_deterministic():
    def run():
        torch.manual_seed(0)
        net = ConvEnergy(1, 4, 28)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x = torch.rand(8, 1, 28, 28) * 2 - 1
        for _ in range(2):
            neg = langevin(net, uniform_noise(8, (1, 28, 28)), 3, 1.0, 0.01, clamp=(-1, 1))
            opt.zero_grad(), ml_loss(net, x, neg, 0.1).backward(), opt.step()
        return torch.cat([p.detach().flatten() for p in net.parameters()])
    assert torch.equal(run(), run())
