"""Tests of deepgen.ddgan: the few-step schedule, real pairs, the posterior step, the losses and the sampler."""
import math

import pytest
import torch

from deepgen.data import toy_density
from deepgen.ddgan import (DDGANLoss, ImageDiscriminator, ImageGenerator, ToyDiscriminator, ToyGenerator,
                           ddgan_sample, denoise_step, gmm_posterior, gmm_x0_spread, oracle_chain, q_pair, sample_z,
                           toy_gan_config, train_toy_ddgan, z_spread)
from deepgen.diffusion import vp_schedule
from deepgen.gan import GANConfig, train_gan
from deepgen.metrics import gaussian_grid_modes


@pytest.mark.parametrize("T", [2, 4])
def test_schedule_matches_the_closed_form(T):
    "β_t = 1 − exp(−β_min/T − ½(β_max − β_min)(2t − 1)/T²) (thesis eq 6.15), ᾱ_t = exp(−β_min t/T − ½(β_max−β_min)t²/T²)."
    s = vp_schedule(T)
    for t in range(1, T + 1):
        beta = 1 - math.exp(-0.1 / T - 0.5 * 19.9 * (2 * t - 1) / T**2)
        alpha_bar = math.exp(-0.1 * t / T - 0.5 * 19.9 * t**2 / T**2)
        assert s.beta[t].item() == pytest.approx(beta, abs=1e-12)
        assert s.alpha_bar[t].item() == pytest.approx(alpha_bar, rel=1e-9)
    if T == 2:  # the numbers a student can check by hand
        assert s.beta[1].item() == pytest.approx(1 - math.exp(-0.05 - 19.9 / 8), abs=1e-12)
        assert s.beta[2].item() == pytest.approx(0.999454, abs=1e-6)  # 1 − e^(−7.5125): the last step is nearly all noise


def test_real_pair_moments_and_the_t1_convention():
    "x_{t−1} ~ q(x_{t−1}|x_0), x_t ~ q(x_t|x_{t−1}): means, variances, covariance; at t = 1, x_{t−1} is the data."
    torch.manual_seed(0)
    s, n, x0_val = vp_schedule(4), 400_000, 0.6
    for t in (1, 3):
        x0 = torch.full((n, 1), x0_val, dtype=torch.float64)
        x_prev, x_t = q_pair(s, x0, torch.full((n,), t))
        ab_prev, ab_t, a_t = s.alpha_bar[t - 1].item(), s.alpha_bar[t].item(), s.alpha[t].item()
        assert x_t.mean().item() == pytest.approx(math.sqrt(ab_t) * x0_val, abs=6e-3)
        assert x_t.var().item() == pytest.approx(1 - ab_t, abs=6e-3)
        cov = ((x_prev - x_prev.mean()) * (x_t - x_t.mean())).mean().item()
        assert cov == pytest.approx(math.sqrt(a_t) * (1 - ab_prev), abs=6e-3)
        if t == 1:
            assert torch.equal(x_prev, x0)


@pytest.mark.parametrize("t", [2, 3, 4])
def test_posterior_step_matches_bayes(t):
    "With G returning the true x_0, the step samples q(x_{t−1}|x_t, x_0): moments from q(x_{t−1}|x_0)q(x_t|x_{t−1})."
    torch.manual_seed(1)
    s, n, x0_val, xt_val = vp_schedule(4), 400_000, 0.8, -0.3
    x0 = torch.full((n, 1), x0_val, dtype=torch.float64)
    x_t = torch.full((n, 1), xt_val, dtype=torch.float64)
    x_prev, x0_pred = denoise_step(lambda x, z, tt: x0, s, x_t, torch.full((n,), t), None, torch.randn_like(x_t))
    ab_prev, a_t = s.alpha_bar[t - 1].item(), s.alpha[t].item()
    var = 1 / (1 / (1 - ab_prev) + a_t / (1 - a_t))
    mean = var * (math.sqrt(ab_prev) * x0_val / (1 - ab_prev) + math.sqrt(a_t) * xt_val / (1 - a_t))
    assert x_prev.mean().item() == pytest.approx(mean, abs=5e-3)
    assert x_prev.var().item() == pytest.approx(var, rel=2e-2)
    assert torch.equal(x0_pred, x0)


def test_last_step_is_the_generators_output_and_other_parametrisations():
    s = vp_schedule(4)
    x_t, x0 = torch.randn(6, 2), torch.randn(6, 2)
    one = torch.ones(6, dtype=torch.long)
    out, _ = denoise_step(lambda x, z, t: x0, s, x_t, one, None, torch.randn(6, 2))
    assert torch.allclose(out, x0, atol=1e-6), "q(x_0|x_1, x_0') is a point mass at x_0'"
    direct, none = denoise_step(lambda x, z, t: x0, s, x_t, one * 3, None, torch.randn(6, 2), param="direct")
    assert torch.equal(direct, x0) and none is None
    eps = torch.randn(6, 2)
    x_t3 = s.q_sample(x0, 3, eps)
    _, x0_from_eps = denoise_step(lambda x, z, t: eps, s, x_t3, one * 3, None, torch.zeros(6, 2), param="eps")
    assert torch.allclose(x0_from_eps, x0, atol=1e-5)


def test_networks_take_the_documented_indexing():
    "The discriminator sees (x_{t−1}, x_t, t) with t in 1..T; the augmentation control sees one image at s in 0..T−1."
    seen = []

    class Spy(ToyDiscriminator):
        def forward(self, x_prev, x_t, t):
            seen.append((t.min().item(), t.max().item(), x_t is None))
            return super().forward(x_prev, x_t, t)

    torch.manual_seed(0)
    G, real = ToyGenerator(hidden=16), torch.randn(512, 2)
    DDGANLoss(T=4).d_loss(G, Spy(hidden=16), real)
    assert seen[-1] == (1, 4, False)
    DDGANLoss(T=4, augment=True).d_loss(G, Spy(hidden=16, pair=False), real)
    assert seen[-1] == (0, 3, True)


def test_image_networks_shapes_and_latent():
    G, D = ImageGenerator(3, ch=8, latent=4, style_dim=8), ImageDiscriminator(3, ch=8)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([1, 4])
    assert G(x, sample_z(G, 2, "cpu"), t).shape == x.shape and D(x, x, t).shape == (2,)
    G0 = ImageGenerator(1, ch=8, latent=0)
    assert sample_z(G0, 2, "cpu") is None and G0(torch.randn(2, 1, 28, 28), None, t).shape == (2, 1, 28, 28)


def test_d_step_does_not_reach_g_and_r1_adds_a_penalty():
    torch.manual_seed(0)
    G, D, real = ToyGenerator(hidden=16), ToyDiscriminator(hidden=16), torch.randn(64, 2)
    torch.manual_seed(3)
    plain = DDGANLoss(T=2, r1_gamma=0.0).d_loss(G, D, real)
    torch.manual_seed(3)
    with_r1 = DDGANLoss(T=2, r1_gamma=10.0).d_loss(G, D, real)
    assert with_r1.item() > plain.item()
    G.zero_grad()
    with_r1.backward()
    assert all(p.grad is None for p in G.parameters())


def test_discriminator_learns_with_g_fixed_and_records_per_step():
    "With G frozen, D's loss (eq 3) falls below chance 2 log 2; the record has one entry per step and t."
    torch.manual_seed(0)
    G, D = ToyGenerator(hidden=16), ToyDiscriminator(hidden=64)
    loss, opt = DDGANLoss(T=4, r1_gamma=0.0), torch.optim.Adam(D.parameters(), lr=3e-3)
    real = torch.randn(256, 2) * 0.1 + 2.0
    for _ in range(150):
        value = loss.d_loss(G, D, real)
        opt.zero_grad(), value.backward(), opt.step()
    assert value.item() < 2 * math.log(2) - 0.2
    by_t = loss.d_loss_by_t(window=50)
    assert by_t.shape == (3, 5) and torch.isnan(torch.tensor(by_t[:, 0])).all()
    assert (by_t[-1, 1:] < by_t[0, 1:]).all()


def test_sampler_is_seeded_and_keeps_predictions():
    torch.manual_seed(0)
    G, s = ToyGenerator(hidden=16), vp_schedule(4)
    x_T = torch.randn(8, 2)
    a, x0s = ddgan_sample(G, s, x_T, generator=torch.Generator().manual_seed(2), keep_x0=True)
    b = ddgan_sample(G, s, x_T, generator=torch.Generator().manual_seed(2))
    c = ddgan_sample(G, s, x_T, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, c) and len(x0s) == 4 and torch.allclose(a, x0s[-1], atol=1e-6)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown"):
        DDGANLoss(param="v")
    with pytest.raises(ValueError, match="one-shot"):
        DDGANLoss(param="eps", augment=True)


def test_training_resumes_exactly(tmp_path):
    "The loss's repr is stable (no schedule object in it), so a killed run resumes from its checkpoint to the same G."
    assert repr(DDGANLoss(T=4)) == repr(DDGANLoss(T=4)) and "NoiseSchedule" not in repr(DDGANLoss())
    data = torch.randn(256, 2)

    class Dying(DDGANLoss):
        calls = 0

        def g_loss(self, G, D, real):
            Dying.calls += 1
            if Dying.calls == 5:
                raise KeyboardInterrupt
            return super().g_loss(G, D, real)

    def run(loss, path):
        torch.manual_seed(0)
        G, D = ToyGenerator(hidden=16), ToyDiscriminator(hidden=16)
        tc = GANConfig(steps=6, batch=32, log_every=2, ckpt_every=2, seed=0, desc="t")
        return G, train_gan(G, D, loss, data, tc, ckpt_path=path)

    G_ref, _ = run(DDGANLoss(T=2), None)
    with pytest.raises(KeyboardInterrupt):
        run(Dying(T=2), tmp_path / "c.pt")
    G_res, res = run(Dying(T=2), tmp_path / "c.pt")
    assert res.resumed_from == 4
    assert all(torch.equal(a, b) for a, b in zip(G_ref.state_dict().values(), G_res.state_dict().values()))


def test_a_resumed_run_keeps_the_whole_discriminator_record(tmp_path):
    "The per-t D record travels in the checkpoint: a killed and resumed run has the record of an uninterrupted one."
    data = torch.randn(256, 2)
    tc = toy_gan_config(8, 32, 1e-3, 0, "t")  # 8 D updates, checkpoints every 2

    class Dying(DDGANLoss):
        def g_loss(self, G, D, real):
            if len(self.d_record) == 5 and not getattr(self, "resumed", False):
                raise KeyboardInterrupt
            return super().g_loss(G, D, real)

    _, straight, _ = train_toy_ddgan(data, 2, tc, hidden=16)
    with pytest.raises(KeyboardInterrupt):
        train_gan(ToyGenerator(hidden=16), ToyDiscriminator(hidden=16), Dying(T=2), data, tc, ckpt_path=tmp_path / "c.pt")
    loss = Dying(T=2)
    loss.resumed = True
    torch.manual_seed(0)
    res = train_gan(ToyGenerator(hidden=16), ToyDiscriminator(hidden=16), loss, data, tc, ckpt_path=tmp_path / "c.pt")
    assert res.resumed_from == 4 and len(loss.d_record) == len(straight.d_record) == 8


def test_chance_share_counts_windows_at_two_log_two():
    loss = DDGANLoss(T=2)
    at_chance = torch.tensor([[0.0, 2 * math.log(2) * 4, 2 * math.log(2) * 4], [0, 4, 4]])
    learned = torch.tensor([[0.0, 0.5 * 4, 1.0 * 4], [0, 4, 4]])
    loss.d_record[:] = [at_chance] * 30 + [learned] * 10
    assert loss.chance_share(window=10) == 0.75 and DDGANLoss(T=2).chance_share() == 0.0


class _EchoZ(torch.nn.Module):
    "A 'generator' whose x_0' is its latent z: its spread across z is the std of N(0, I), 1."
    latent = 2

    def forward(self, x_t, z, t):
        return z


def test_z_spread_and_the_exact_posterior_spread_have_known_values():
    x_t, s4 = torch.randn(20, 2), vp_schedule(4)
    assert abs(z_spread(_EchoZ(), s4, x_t, 1, n_z=4000) - 1) < 0.05
    assert z_spread(ToyGenerator(latent=0, hidden=8), s4, x_t, 1) < 1e-6  # float round-off only
    ab = s4.alpha_bar[3].item()  # one component N(0, 0.3²): q(x_0|x_t) has variance s²(1 − ᾱ)/(ᾱ s² + 1 − ᾱ)
    assert abs(gmm_x0_spread(s4, x_t, 3, torch.zeros(1, 2), 0.3) - (0.09 * (1 - ab) / (ab * 0.09 + 1 - ab)) ** 0.5) < 1e-9
    two = torch.tensor([[-3.0, 0.0], [3.0, 0.0]])  # seen from a far-noised x_t: about a fair coin between ±3
    assert 1.3 < gmm_x0_spread(s4, torch.zeros(50, 2), 4, two, 0.05) < 1.6


def test_oracle_single_component_is_the_ddpm_posterior():
    "One component with s = 0 is a point mass at μ: q(x_{t−1}|x_t) is the DDPM posterior at x_0 = μ; E[x_0|x_t] = μ."
    s, mu = vp_schedule(4), torch.tensor([[1.5, -0.5]], dtype=torch.float64)
    x_t = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for t in range(1, 5):
        w, m, S, x0_mean = gmm_posterior(s, x_t, t, mu, 0.0)
        assert torch.allclose(w, torch.ones_like(w)) and torch.allclose(x0_mean, mu.expand_as(x_t))
        assert torch.allclose(m[:, 0], s.posterior_mean(mu, x_t, t))
        assert S == pytest.approx(s.post_var[t].item(), abs=1e-12)


def test_oracle_mixture_mean_is_the_posterior_mean_at_the_expected_x0():
    "Tower rule on the 25 Gaussians: Σ_k w_k m_k = μ̃_t(x_t, E[x_0|x_t]); the weights sum to 1."
    s, (density, _) = vp_schedule(4), toy_density("25gaussians")
    x_t = 3 * torch.randn(128, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for t in range(1, 5):
        w, m, S, x0_mean = gmm_posterior(s, x_t, t, density.means, density.std)
        assert torch.allclose(w.sum(1), torch.ones(128, dtype=torch.float64))
        assert torch.allclose((w[..., None] * m).sum(1), s.posterior_mean(x0_mean, x_t, t), atol=1e-9)


def test_oracle_four_exact_steps_are_sharp_and_four_gaussian_steps_are_not():
    "Thesis §6.1–6.2 on the 25 Gaussians: at T = 4 the exact multimodal chain is sharp, the best Gaussian step a haze."
    density, _ = toy_density("25gaussians")
    x_T = torch.randn(2000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    hq = {step: gaussian_grid_modes(oracle_chain(vp_schedule(4), x_T, density.means, density.std, step,
                                                 generator=torch.Generator().manual_seed(1)),
                                    density.means, density.std)["high_quality"]
          for step in ("exact", "best gaussian")}
    assert hq["exact"] > 0.9 and hq["best gaussian"] < 0.3, hq
    with pytest.raises(ValueError, match="unknown step"):
        oracle_chain(vp_schedule(4), x_T, density.means, density.std, "ddpm")
