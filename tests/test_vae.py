"The VAE chapter's module: shapes, the closed-form KL, reparameterised gradients, the IWAE bound, and learning."
import math

import pytest
import torch

from deepgen.data import gaussian_log_prob, sample_toy
from deepgen.nets import ConvDecoder, ConvEncoder, mlp
from deepgen.train import TrainConfig, train
from deepgen.vae import (VAE, active_units, elbo, gaussian_kl, iwae_bound, kl_weight, reparameterize, sample,
                         unit_pixels)


def toy_vae(seed=0, hidden=32, obs_logvar=None):
    "An MLP VAE on 2D points; a fixed decoder variance (`obs_logvar`) keeps a short run from collapsing."
    torch.manual_seed(seed)
    return VAE(mlp(2, 4, hidden, 2), mlp(2, 4 if obs_logvar is None else 2, hidden, 2), latent=2,
               likelihood="gaussian", obs_logvar=obs_logvar)


def neg_elbo(model, x):
    rec, kl = elbo(model, x)
    return (kl - rec).mean()


@pytest.fixture(scope="module")
def trained():
    "A tiny VAE trained briefly on 8 Gaussians, and its data."
    x = sample_toy("8gaussians", 2000, seed=1)
    model = toy_vae(obs_logvar=2 * math.log(0.2))
    train(model, neg_elbo, x, TrainConfig(steps=300, batch=128, lr=3e-3, ema=0, log_every=100, ckpt_every=0))
    return model.eval(), x


def test_shapes_for_mlp_and_conv_models():
    model = toy_vae()
    mu, logvar, z, (mean, lv) = model(torch.randn(5, 2))
    assert mu.shape == logvar.shape == z.shape == mean.shape == lv.shape == (5, 2)
    assert (lv >= model.min_logvar).all()
    fixed = VAE(mlp(2, 4), mlp(2, 2), latent=2, likelihood="gaussian", obs_logvar=-1.5)
    assert torch.equal(fixed(torch.randn(3, 2))[3][1], torch.full((3, 2), -1.5))
    conv = VAE(ConvEncoder(28, 1, 2 * 4, ch=8), ConvDecoder(28, 4, 1, ch=8), latent=4)
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    rec, kl = elbo(conv, x)
    assert rec.shape == kl.shape == (3,) and (kl >= 0).all() and (rec <= 0).all()
    assert sample(conv, 6).shape == (6, 1, 28, 28) and iwae_bound(conv, x, 3).shape == (3,)
    with pytest.raises(ValueError):
        VAE(mlp(2, 4), mlp(2, 4), latent=2, likelihood="poisson")


def test_kl_closed_form():
    mu, logvar = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([0.5, -2.0, 0.0])
    assert torch.allclose(gaussian_kl(mu, logvar, mu, logvar), torch.zeros(3), atol=1e-7)
    assert abs(gaussian_kl(torch.tensor(1.0), torch.tensor(0.0)).item() - 0.5) < 1e-6
    assert abs(gaussian_kl(torch.tensor(0.0), torch.tensor(4.0).log()).item() - 0.5 * (3 - math.log(4))) < 1e-6
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.tensor([1.0, 0.0, -1.0]), torch.tensor([2.0, 0.5, 1.0]))
    ref = torch.distributions.kl_divergence(q, p)
    assert torch.allclose(gaussian_kl(mu, logvar, p.loc, 2 * p.scale.log()), ref, atol=1e-6)
    x = torch.randn(4, 3)
    assert torch.allclose(gaussian_log_prob(x, mu, logvar), q.log_prob(x).sum(-1), atol=1e-5)


def test_reparameterization_gradients_flow_and_are_right():
    torch.manual_seed(0)
    mu = torch.tensor([0.7, -0.4], requires_grad=True)
    logvar = torch.tensor([0.2, -1.0], requires_grad=True)
    z = reparameterize(mu.expand(100_000, 2), logvar.expand(100_000, 2))
    (z ** 2).sum(1).mean().backward()  # E[z²] = mu² + sigma²
    assert torch.allclose(mu.grad, 2 * mu.detach(), atol=0.03)
    assert torch.allclose(logvar.grad, logvar.detach().exp(), atol=0.03)  # d sigma² / d logvar = sigma²


def test_gradients_reach_encoder_and_decoder():
    model = toy_vae()
    neg_elbo(model, torch.randn(16, 2)).backward()
    for net in (model.encoder, model.decoder):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_iwae_is_above_the_elbo_and_k1_matches_it(trained):
    model, x = trained
    torch.manual_seed(1)
    with torch.no_grad():
        xs = x[:400].repeat(10, 1)
        rec, kl = elbo(model, xs)
        e, l1, l64 = rec - kl, iwae_bound(model, xs, 1), iwae_bound(model, x[:400], 64, max_batch=1000)
    se = (l1 - e).std().item() / math.sqrt(len(xs))
    assert abs(l1.mean().item() - e.mean().item()) < 4 * se + 1e-3
    assert l64.mean() > e.mean() + 0.01 and l64.mean() > l1.mean()


def test_iwae_is_reproducible_and_independent_of_chunking(trained):
    model, x = trained
    torch.manual_seed(2)
    a = iwae_bound(model, x[:50], 64)
    torch.manual_seed(2)
    assert torch.equal(a, iwae_bound(model, x[:50], 64))
    c = iwae_bound(model, x[:50], 64, max_batch=30)  # examples split 30 + 20, one sample per decoder call
    assert abs(c.mean().item() - a.mean().item()) < 0.1


def test_loss_decreases_on_a_toy():
    model = toy_vae(seed=3, obs_logvar=2 * math.log(0.2))
    res = train(model, neg_elbo, sample_toy("8gaussians", 2000, seed=0),
                TrainConfig(steps=150, batch=128, lr=3e-3, ema=0, log_every=25, ckpt_every=0))
    assert res.history[-1]["loss"] < 0.5 * res.history[0]["loss"]


def test_learned_variance_collapses_without_warmup_and_not_with_it():
    "The notebook's toy finding, small: at beta = 1 the decoder explains the data as one Gaussian (KL -> 0)."
    x = sample_toy("8gaussians", 2000, seed=0)
    kls = {}
    for warmup in (0, 200):
        model, t = toy_vae(seed=0), {"n": 0}

        def loss(m, xb):
            rec, kl = elbo(m, xb)
            t["n"] += 1
            return (kl_weight(t["n"] - 1, warmup) * kl - rec).mean()
        train(model, loss, x, TrainConfig(steps=400, batch=128, lr=3e-3, ema=0, log_every=100, ckpt_every=0))
        with torch.no_grad():
            kls[warmup] = elbo(model, x)[1].mean().item()
    assert kls[0] < 0.05 and kls[200] > 0.5


def test_kl_weight_and_pixels():
    assert [kl_weight(s, 4) for s in (0, 2, 4, 9)] == [0.0, 0.5, 1.0, 1.0] and kl_weight(3, 0) == 1.0
    assert unit_pixels(torch.tensor([0, 51, 255], dtype=torch.uint8)).tolist() == pytest.approx([0.0, 0.2, 1.0])
    f = torch.rand(3)
    assert unit_pixels(f) is f


def test_active_units_counts_only_units_that_move():
    class CopyFirst(torch.nn.Module):
        def forward(self, x):  # mu = (x_0, 0, 0), logvar = 0
            return torch.cat([x[:, :1], torch.zeros(len(x), 5)], 1)

    n, activity = active_units(VAE(CopyFirst(), mlp(3, 4), latent=3, likelihood="gaussian"), torch.randn(300, 2))
    assert n == 1 and activity[0] > 0.5 and activity[1:].abs().max() == 0


def test_samples_follow_the_likelihood():
    torch.manual_seed(0)
    conv = VAE(ConvEncoder(28, 1, 8, ch=8), ConvDecoder(28, 4, 1, ch=8), latent=4)
    means, draws = sample(conv, 4), sample(conv, 4, mean=False)
    assert 0 <= means.min() and means.max() <= 1 and set(draws.unique().tolist()) <= {0.0, 1.0}
    fixed = VAE(mlp(2, 4), mlp(2, 2), latent=2, likelihood="gaussian", obs_logvar=math.log(0.25))
    torch.manual_seed(1)
    mean = sample(fixed, 20_000)
    torch.manual_seed(1)  # the same z: the draw differs from the mean by the decoder noise, sigma = 0.5
    assert abs((sample(fixed, 20_000, mean=False) - mean).std().item() - 0.5) < 0.01
