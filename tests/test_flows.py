"Normalizing flows: invertibility, log-determinants against autograd, exact log-density, training, sampling."
import math

import pytest
import torch

from deepgen.flows import (ActNorm, AffineCoupling, Flow, InvConv1x1, Logit, Squeeze, alternating_mask,
                           channel_mask, checkerboard_mask, conv_conditioner, dequantize, image_flow, mlp_conditioner,
                           nll_loss, realnvp_2d, standard_normal_log_prob, to_pixels)
from deepgen.train import TrainConfig, train


def jiggle(module, std=0.3, seed=0):
    "Perturb every parameter: fresh layers are often the identity, which would hide a wrong log-det."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def autograd_logdet(layer, x):
    "log|det J| of `layer` at each example of `x`, from the full Jacobian."
    out = []
    for xi in x:
        fn = lambda v: layer(v.view(1, *x.shape[1:]))[0].flatten()
        jac = torch.autograd.functional.jacobian(fn, xi.flatten(), strategy="forward-mode", vectorize=True)
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def layers():
    torch.manual_seed(0)
    return {
        "coupling_2d": (jiggle(AffineCoupling(alternating_mask(2, 0), mlp_conditioner(2, 16))), torch.randn(3, 2)),
        "coupling_4d": (jiggle(AffineCoupling(alternating_mask(4, 1), mlp_conditioner(4, 16))), torch.randn(3, 4)),
        "coupling_checker": (jiggle(AffineCoupling(checkerboard_mask(2, 4, 4, 1), conv_conditioner(2, 8))),
                             torch.randn(2, 2, 4, 4)),
        "coupling_channel": (jiggle(AffineCoupling(channel_mask(4, 0), conv_conditioner(4, 8))),
                             torch.randn(2, 4, 2, 2)),
        "actnorm_image": (jiggle(ActNorm(2)), torch.randn(2, 2, 4, 4)),
        "actnorm_vector": (jiggle(ActNorm(3)), torch.randn(3, 3)),
        "invconv": (jiggle(InvConv1x1(3), std=0.2), torch.randn(2, 3, 3, 3)),
        "squeeze": (Squeeze(), torch.randn(2, 1, 4, 4)),
        "logit": (Logit(0.05), torch.rand(2, 1, 3, 3)),
    }


@pytest.mark.parametrize("name", list(layers()))
def test_layer_inverts_and_logdet_matches_autograd(name):
    layer, x = layers()[name]
    layer, x = layer.double(), x.double()
    with torch.no_grad():
        y, logdet = layer(x)
        assert (layer.inverse(y) - x).abs().max() < 1e-5
    assert logdet.shape == (len(x),)
    assert torch.allclose(logdet, autograd_logdet(layer, x), atol=1e-5)


def test_a_wrong_logdet_is_caught():
    "The autograd check can fail: a coupling whose log-det forgets the mask is off."
    layer, x = layers()["coupling_2d"]
    layer, x = layer.double(), x.double()
    y, logdet = layer(x)
    s, _ = layer.net(x * layer.mask).chunk(2, dim=1)
    wrong = (layer.scale * torch.tanh(s)).sum(1)  # sums s over the kept dims too
    assert not torch.allclose(wrong, autograd_logdet(layer, x), atol=1e-3)


def test_fresh_flow_is_the_standard_normal():
    x = torch.randn(6, 2)
    ref = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2)).log_prob(x)
    assert torch.allclose(realnvp_2d(4, 16).log_prob(x), ref, atol=1e-6)
    assert torch.allclose(standard_normal_log_prob(x), ref, atol=1e-6)


def test_image_flow_log_prob_is_change_of_variables():
    torch.manual_seed(0)
    flow = image_flow(1, 4, hidden=8, steps=1)
    flow.data_init(dequantize(torch.randint(0, 256, (16, 1, 4, 4), dtype=torch.uint8)))
    flow = jiggle(flow, std=0.05).double()
    x = dequantize(torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)).double()
    assert (flow.inverse(flow(x)[0]) - x).abs().max() < 1e-8
    z = flow(x)[0]
    assert torch.allclose(flow.log_prob(x), standard_normal_log_prob(z) + autograd_logdet(flow, x), atol=1e-6)


def test_actnorm_data_init_standardises():
    x = torch.randn(64, 3, 4, 4) * torch.tensor([0.5, 2.0, 5.0]).view(1, 3, 1, 1) + 3
    flow = Flow([ActNorm(3)], (3, 4, 4)).data_init(x)
    z, _ = flow(x)
    assert torch.allclose(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std((0, 2, 3)), torch.ones(3), atol=1e-3)


def test_nll_decreases_on_a_toy():
    torch.manual_seed(0)
    data = torch.randn(2000, 2) * torch.tensor([2.0, 0.3]) + torch.tensor([1.0, -1.0])
    flow = realnvp_2d(4, 32)
    start = nll_loss(flow, data).item()
    res = train(flow, nll_loss, data, TrainConfig(steps=150, batch=128, lr=5e-3, ema=0, log_every=50, ckpt_every=0))
    end = nll_loss(flow, data).item()
    true_entropy = 0.5 * 2 * (1 + math.log(2 * math.pi)) + math.log(2.0 * 0.3)
    assert end < start - 0.5 and end < true_entropy + 0.3
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_sample_shapes_and_pixels():
    torch.manual_seed(0)
    assert realnvp_2d(2, 8).sample(7).shape == (7, 2)
    flow = image_flow(1, 8, hidden=4, steps=1)
    for temperature in (1.0, 0.7):
        x = flow.sample(5, temperature)
        assert x.shape == (5, 1, 8, 8) and torch.isfinite(x).all()
        assert to_pixels(x).dtype == torch.uint8
    px = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(to_pixels(dequantize(px)), px)


def test_nll_loss_is_minus_the_mean_log_prob_of_a_perturbed_flow():
    "The training loss is −mean log p(x), with log p from the change of variables (log-det by autograd): a flipped sign fails."
    torch.manual_seed(0)
    flow = jiggle(realnvp_2d(n_layers=4, hidden=16), std=0.3)
    x = 2 * torch.randn(16, 2)
    z, logdet = flow(x)
    assert logdet.abs().mean() > 0.1  # a perturbed flow: the log-det term matters
    exact = standard_normal_log_prob(z) + autograd_logdet(flow, x)
    assert torch.allclose(flow.log_prob(x), exact, atol=1e-4)
    assert nll_loss(flow, x).item() == pytest.approx(-exact.mean().item(), abs=1e-4)
