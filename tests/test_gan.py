"The GAN chapter's module: losses at known logits, penalties in closed form, the optimal discriminator, nets, loop."
import math

import pytest
import torch
from torch import nn

from deepgen.data import sample_toy, toy_density, toy_log_prob
from deepgen.gan import (GANConfig, GANLoss, Discriminator, d_loss, dcgan, g_loss_minimax, g_loss_nonsaturating,
                         gradient_penalty, mlp_gan, optimal_discriminator, r1_penalty, train_gan, wgan_critic_loss,
                         wgan_g_loss)
from deepgen.nets import mlp
from deepgen.train import TrainingError

TOY = sample_toy("8gaussians", 1024, seed=3)


def test_losses_at_known_logits():
    zero = torch.zeros(16)
    assert d_loss(zero, zero).item() == pytest.approx(2 * math.log(2), abs=1e-6)
    assert g_loss_minimax(zero).item() == pytest.approx(-math.log(2), abs=1e-6)
    assert g_loss_nonsaturating(zero).item() == pytest.approx(math.log(2), abs=1e-6)
    # a confident, correct discriminator: loss near 0; a fooled one: large
    big = torch.full((4,), 20.0)
    assert d_loss(big, -big).item() < 1e-8 and d_loss(-big, big).item() == pytest.approx(40, rel=1e-4)
    assert wgan_critic_loss(torch.tensor([2.0, 4.0]), torch.tensor([1.0])).item() == -2.0
    assert wgan_g_loss(torch.tensor([1.0, 3.0])).item() == -2.0


def test_minimax_saturates_where_nonsaturating_does_not():
    for value, mm_expected, ns_expected in ((-12.0, 0.0, -1.0), (0.0, -0.5, -0.5), (12.0, -1.0, 0.0)):
        logit = torch.tensor([value], requires_grad=True)
        (g_mm,) = torch.autograd.grad(g_loss_minimax(logit), logit)
        (g_ns,) = torch.autograd.grad(g_loss_nonsaturating(logit), logit)
        assert g_mm.item() == pytest.approx(mm_expected, abs=1e-4)
        assert g_ns.item() == pytest.approx(ns_expected, abs=1e-4)
    # at D(G(z)) -> 0 the non-saturating gradient is > 10^4 times the minimax one
    logit = torch.tensor([-12.0], requires_grad=True)
    ratio = torch.autograd.grad(g_loss_nonsaturating(logit), logit)[0] / torch.autograd.grad(g_loss_minimax(logit), logit)[0]
    assert ratio.item() > 1e4


def linear(w, b=0.0):
    w = torch.tensor(w)
    return lambda x: x @ w + b


def test_gradient_penalty_zero_for_unit_norm_linear_critic_positive_otherwise():
    torch.manual_seed(0)
    real, fake = torch.randn(128, 3), torch.randn(128, 3) * 2 + 1
    assert gradient_penalty(linear([0.0, 0.6, 0.8]), real, fake).item() < 1e-10
    for w, norm in (([0.0, 0.3, 0.4], 0.5), ([2.0, 0.0, 0.0], 2.0)):
        gp = gradient_penalty(linear(w), real, fake, lam=10.0).item()
        assert gp > 0 and gp == pytest.approx(10 * (norm - 1) ** 2, rel=1e-5)
    # images: the per-example gradient norm is over all pixels
    conv_real, conv_fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    w = torch.full((1, 1, 2, 2), 0.5)  # ‖w‖ = 1
    assert gradient_penalty(lambda x: (x * w).flatten(1).sum(1), conv_real, conv_fake).item() < 1e-10


def test_gradient_penalty_trains_the_critic():
    critic = Discriminator(mlp(2, 1, 16, 2))
    real, fake = torch.randn(32, 2), torch.randn(32, 2)
    gradient_penalty(critic, real, fake).backward()
    first = critic.net[0].weight  # the output bias cannot change an input gradient; the weights must get one
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_r1_of_linear_discriminator():
    x = torch.randn(50, 2).requires_grad_(True)
    D = linear([1.5, -2.0], b=0.7)
    assert r1_penalty(D(x), x, gamma=0.2).item() == pytest.approx(0.2 / 2 * (1.5**2 + 2.0**2), rel=1e-6)


def test_optimal_discriminator_and_training_recovers_it():
    p_logpdf = lambda x: toy_log_prob("bimodal_1d", x)
    q = torch.distributions.Normal(0.0, 0.5)
    grid = torch.linspace(-2, 2, 401)[:, None]
    D_star = optimal_discriminator(p_logpdf(grid), q.log_prob(grid[:, 0]))
    assert torch.allclose(D_star, p_logpdf(grid).exp() / (p_logpdf(grid).exp() + q.log_prob(grid[:, 0]).exp()), atol=1e-6)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    density, _ = toy_density("bimodal_1d")
    D = Discriminator(mlp(1, 1, 32, 3, act=lambda: nn.LeakyReLU(0.2)))
    opt = torch.optim.Adam(D.parameters(), lr=3e-3)
    for _ in range(600):
        loss = d_loss(D(density.sample(256, gen)), D(q.sample((256, 1))))
        opt.zero_grad(), loss.backward(), opt.step()
    with torch.no_grad():
        D_fit = torch.sigmoid(D(grid))
    weight = 0.5 * (p_logpdf(grid).exp() + q.log_prob(grid[:, 0]).exp())
    err = ((D_fit - D_star).abs() * weight).sum() / weight.sum()
    assert err.item() < 0.06, err


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_dcgan_shapes(size, channels):
    G, D = dcgan(size, channels, latent=12, ch=8)
    x = G.sample(3)
    assert x.shape == (3, channels, size, size) and x.abs().max() <= 1
    assert D(x).shape == (3,) and G(torch.randn(2, 12)).shape == (2, channels, size, size)
    G2, D2 = mlp_gan(dim=2, latent=3, hidden=8)
    assert G2.sample(4).shape == (4, 2) and D2(torch.randn(4, 2)).shape == (4,)


def test_d_step_does_not_reach_generator_and_unknown_kind_fails():
    G, D = mlp_gan(hidden=8)
    GANLoss("ns", r1_gamma=1.0).d_loss(G, D, TOY[:16].clone()).backward()
    assert all(p.grad is None for p in G.parameters()) and all(p.grad is not None for p in D.parameters())
    with pytest.raises(ValueError):
        GANLoss("hinge")


def run(kind="ns", seed=0, steps=6, path=None, loss=None, ema=0.9):
    torch.manual_seed(seed)
    G, D = mlp_gan(hidden=16)
    tc = GANConfig(steps=steps, batch=32, n_critic=2, lr_g=1e-3, lr_d=1e-3, ema=ema, log_every=2, ckpt_every=2, seed=seed)
    return G, train_gan(G, D, loss or GANLoss(kind), TOY, tc, ckpt_path=path)


def test_seeds_give_the_same_numbers_and_different_seeds_differ():
    (G1, r1), (G2, r2), (G3, _) = run(seed=1), run(seed=1), run(seed=2)
    assert [h["g_loss"] for h in r1.history] == [h["g_loss"] for h in r2.history]
    assert all(torch.equal(a, b) for a, b in zip(G1.parameters(), G2.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(G1.parameters(), G3.parameters()))


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    G_ref, ref = run("wgan-gp", steps=8)

    class Dying(GANLoss):
        calls = 0

        def g_loss(self, G, D, real):
            Dying.calls += 1
            if Dying.calls == 6:
                raise KeyboardInterrupt
            return super().g_loss(G, D, real)

    with pytest.raises(KeyboardInterrupt):
        run(steps=8, path=tmp_path / "g.pt", loss=Dying("wgan-gp"))
    Dying.calls = -10**9
    G_res, res = run(steps=8, path=tmp_path / "g.pt", loss=Dying("wgan-gp"))
    assert res.resumed_from == 4
    assert [h["d_loss"] for h in res.history] == [h["d_loss"] for h in ref.history]
    assert all(torch.equal(a, b) for a, b in zip(G_ref.state_dict().values(), G_res.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(ref.ema.state_dict().values(), res.ema.state_dict().values()))
    # a finished checkpoint is loaded, not retrained; other settings are not resumed
    assert run(steps=8, path=tmp_path / "g.pt", loss=Dying("wgan-gp"))[1].resumed_from == 8
    assert run("ns", steps=8, path=tmp_path / "g.pt")[1].resumed_from == 0


def test_nan_raises_one_line_error():
    bad = TOY.clone()
    bad[:] = float("nan")
    torch.manual_seed(0)
    G, D = mlp_gan(hidden=8)
    with pytest.raises(TrainingError, match="D loss nan") as e:
        train_gan(G, D, GANLoss("ns"), bad, GANConfig(steps=4, batch=8, log_every=2))
    assert "\n" not in str(e.value)


def test_gan_learns_the_ring_scale():
    "A short non-saturating run moves the generator's samples from ~0 out to the ring of radius 2."
    torch.manual_seed(0)
    G, D = mlp_gan(hidden=32)
    before = G.sample(500).detach().norm(dim=1).mean().item()
    train_gan(G, D, GANLoss("ns"), TOY, GANConfig(steps=300, batch=128, lr_g=1e-3, lr_d=1e-3, log_every=100))
    after = G.sample(500).detach().norm(dim=1).mean().item()
    assert abs(after - 2.0) < abs(before - 2.0) and abs(after - 2.0) < 0.5, (before, after)
