"The DDN chapter's module: Split-and-Prune bookkeeping, the layer's shapes, latent round trips, ZSCG without gradients."
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepgen.ddn import (DiscreteDistributionLayer, RecurrenceDDN, SingleShotDDN, ToyNodes, classifier_criterion,
                         colorization_criterion, ddn_loss, decode, fixed_choice, generate, grey, inpainting_criterion,
                         l2_criterion,
                         latent_bits, latent_tree_classifier, rank_fusion, reconstruct, resize, split_prune_pair,
                         super_resolution_criterion, zscg)


def pick_last(alternatives, latent):
    "alternatives[b, latent[b, -1]]: the image of each example's own last-layer node."
    return alternatives[torch.arange(len(latent)), latent[:, -1]]


def tiny_ssg(K=4, leak_ch=2, residual=True):
    torch.manual_seed(0)
    return SingleShotDDN(img_size=8, img_ch=1, K=K, ch=8, blocks=2, leak_ch=leak_ch, residual=residual)


def test_split_prune_pair_thresholds():
    K = 4  # thresholds 2/K = 0.5 and 0.5/K = 0.125
    assert split_prune_pair(torch.tensor([1.0, 1.0, 1.0, 1.0]), K) is None
    assert split_prune_pair(torch.zeros(K), K) is None
    assert split_prune_pair(torch.tensor([6.0, 2.0, 1.5, 1.5]), K) == (0, 2)  # top share 0.55 > 0.5
    assert split_prune_pair(torch.tensor([3.0, 3.0, 3.0, 1.0]), K) == (0, 3)  # bottom share 0.1 < 0.125
    assert split_prune_pair(torch.tensor([4.0, 3.0, 2.0, 2.0]), K) is None  # 0.36 and 0.18: inside both bands


def test_split_and_prune_keeps_K_and_conserves_counts():
    torch.manual_seed(0)
    nodes = ToyNodes(6, [-2.0, -2.0], [2.0, 2.0])
    opt = torch.optim.Adam(nodes.parameters(), lr=0.05)
    data = torch.randn(400, 2) * 0.3 + 1.0  # all data in one corner: most nodes are dead
    ops = 0
    for x in data.split(4):
        total = nodes.counts.sum().item()
        pair = nodes.split_and_prune(opt)
        if pair is not None:
            k_max, k_min = pair
            ops += 1
            assert nodes.counts.sum().item() == pytest.approx(total - before[k_min].item())
            assert nodes.counts[k_max] == nodes.counts[k_min] == pytest.approx(before[k_max].item() / 2)
            assert torch.equal(nodes.psi[k_max], nodes.psi[k_min])
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(opt.state[nodes.psi][key][k_max], opt.state[nodes.psi][key][k_min])
        assert nodes.psi.shape == (6, 2) and nodes.counts.shape == (6,)
        k, loss = nodes(x)
        nodes.record(k)
        opt.zero_grad(), loss.backward(), opt.step()
        before = nodes.counts.clone()
    assert ops > 0 and int(nodes.n_ops) == ops


def test_split_and_prune_on_a_layer_clones_a_block_of_rows():
    "A DDL node owns width = out_ch + leak_ch rows of the 1×1 conv: S&P copies that block, weights, bias and Adam moments."
    torch.manual_seed(0)
    ddl = DiscreteDistributionLayer(5, 3, K=4, leak_ch=2)  # node width 5: node k owns rows 5k .. 5k+4
    opt = torch.optim.Adam(ddl.parameters(), lr=0.01)
    for _ in range(2):  # populate both moments with different values per row
        cand, leak = ddl(torch.randn(2, 5, 3, 3), torch.randn(2, 3, 3, 3))
        loss = (cand * torch.arange(1.0, 5.0).view(1, 4, 1, 1, 1)).square().mean() + leak.square().mean()
        opt.zero_grad(), loss.backward(), opt.step()
    ddl.counts.copy_(torch.tensor([10.0, 3.0, 0.5, 3.0], dtype=torch.float64))  # k_max = 0, k_min = 2
    params = [ddl.nodes.weight, ddl.nodes.bias]
    moments = [opt.state[p][key] for p in params for key in ("exp_avg", "exp_avg_sq")]
    before = [t.clone() for t in params + moments]
    src, dst = slice(0, 5), slice(10, 15)
    assert all(not torch.equal(t[src], t[dst]) for t in before)  # the check below can fail
    assert ddl.split_and_prune(opt) == (0, 2)
    for old, new in zip(before, params + moments):
        assert torch.equal(new[dst], old[src])  # the pruned slot holds the clone: all 5 rows
        keep = torch.ones(len(old), dtype=torch.bool)
        keep[dst] = False
        assert torch.equal(new[keep], old[keep])  # every other row, the parent's included, is untouched
    assert ddl.counts.tolist() == [5.0, 3.0, 5.0, 3.0] and int(ddl.n_ops) == 1


def test_split_prune_beats_gradient_descent_on_bimodal():
    "§3.1's asymmetric bimodal: GD keeps the initial split of nodes; Split-and-Prune moves mass to the big peak."
    def fit(split):
        g = torch.Generator().manual_seed(0)
        nodes = ToyNodes(10, [-2.0], [2.0], generator=g)
        opt = torch.optim.Adam(nodes.parameters(), lr=0.02)
        big = torch.rand(3000, generator=g) < 0.8
        x = torch.where(big, -1.0, 1.0)[:, None] + 0.05 * torch.randn(3000, 1, generator=g)
        for xb in x.split(1):
            if split:
                nodes.split_and_prune(opt)
            k, loss = nodes(xb)
            nodes.record(k)
            opt.zero_grad(), loss.backward(), opt.step()
        return float((nodes.psi < 0).float().mean())
    assert fit(True) > fit(False)


def test_layer_shapes_residual_and_rows():
    ddl = DiscreteDistributionLayer(5, 3, K=4, leak_ch=2, residual=True)
    h, prev = torch.randn(2, 5, 6, 6), torch.randn(2, 3, 6, 6)
    cand, leak = ddl(h, prev)
    assert cand.shape == (2, 4, 3, 6, 6) and leak.shape == (2, 4, 2, 6, 6)
    with torch.no_grad():
        ddl.nodes.weight.zero_(), ddl.nodes.bias.zero_()
    cand, _ = ddl(h, prev)
    assert torch.allclose(cand, prev[:, None].expand_as(cand))  # Learning Residual: zero correction = previous pick
    with torch.no_grad():  # node 2 owns rows 10..14 (width 3 + 2)
        ddl.nodes.bias[10:15] = 1.0
    cand, leak = ddl(h, prev)
    assert torch.allclose(cand[:, 2] - prev, torch.ones_like(prev)) and torch.allclose(leak[:, 2], torch.ones(2, 2, 6, 6))
    assert torch.allclose(cand[:, 1], prev)


def test_generation_latent_round_trips():
    model = tiny_ssg().eval()
    x, lat = generate(model, 6, generator=torch.Generator().manual_seed(3))
    assert x.shape == (6, 1, 8, 8) and lat.shape == (6, model.L) and lat.dtype == torch.long
    assert torch.allclose(decode(model, lat), x)
    target = torch.rand(6, 1, 8, 8) * 2 - 1  # not on the tree: the greedy path is a real search
    for img in (x, target):
        rec, lat_rec = reconstruct(model, img)
        assert torch.equal(decode(model, lat_rec), rec)  # the reconstruction is exactly the picked path's image
        seen = []

        def replay(level, cand):  # walk the picked path, keeping every layer's K candidates
            seen.append(cand)
            return fixed_choice(lat_rec)(level, cand)

        model(replay, len(img))
        assert len(seen) == model.L
        for level, cand in enumerate(seen):  # greedy: each pick is the nearest of its layer's candidates (eq. 1)
            ref = F.interpolate(img, size=cand.shape[-2:], mode="area")
            dist = (cand - ref[:, None]).square().flatten(2).mean(2)
            assert torch.equal(lat_rec[:, level], dist.argmin(1))
    x2, lat2 = generate(model, 6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(lat, lat2) and torch.equal(x, x2)


def test_recurrence_round_trip_and_conditioning():
    torch.manual_seed(0)
    model = RecurrenceDDN(img_size=8, img_ch=1, K=3, L=2, ch=8, ch_mult=(1, 2), n_classes=2).eval()
    y = torch.tensor([0, 1, 0])
    x, lat = generate(model, 3, y=y, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(decode(model, lat, y=y), x)
    assert not torch.allclose(decode(model, lat, y=1 - y), x)  # the label changes the picture


def test_loss_decreases_and_no_dropout_at_K2():
    model = tiny_ssg()
    target = torch.rand(8, 1, 8, 8) * 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = ddn_loss(model, target, optimizer=opt)
        opt.zero_grad(), loss.backward(), opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert all(d.counts.sum() > 0 for d in model.ddls)
    # Chain Dropout with p = 1 makes every pick random; K = 2 switches it off, so the loss is the guided one
    k2 = tiny_ssg(K=2)
    torch.manual_seed(1)
    l_nodrop = ddn_loss(k2, target, p_drop=0.0).item()
    torch.manual_seed(1)
    assert ddn_loss(k2, target, p_drop=1.0).item() == pytest.approx(l_nodrop)


def test_criteria_pick_the_matching_candidate():
    torch.manual_seed(0)
    truth = torch.rand(3, 3, 16, 16) * 2 - 1
    cand = torch.stack([torch.rand_like(truth) * 2 - 1, -truth, truth], 1)  # node 2 is the truth
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 8:] = 1
    for crit in (l2_criterion(truth), super_resolution_criterion(resize(truth, 4)), colorization_criterion(grey(truth)),
                 inpainting_criterion(truth, mask), rank_fusion([l2_criterion(truth), l2_criterion(truth)], [0.3, 0.7])):
        assert (crit(cand).argmin(1) == 2).all()
    half = truth.clone()
    half[..., :8] = 5.0  # garbage where the mask is 0: inpainting ignores it
    assert inpainting_criterion(half, mask)(cand)[:, 2].abs().max() < 1e-6


def test_classifier_criterion_ranks_the_most_probable_candidate_first():
    "Eq. (5): a classifier with known logits [10m, −10m, 0] (m = image mean) decides which candidate each class wants."
    def classifier(img):
        m = img.flatten(1).mean(1)
        return torch.stack([10 * m, -10 * m, torch.zeros_like(m)], 1)

    levels = torch.tensor([-0.5, 0.8, 0.1])  # candidate k is the constant image levels[k]
    cand = levels.view(1, 3, 1, 1, 1).expand(3, 3, 3, 8, 8)
    y = torch.tensor([0, 1, 2])  # class 0 wants the largest mean, class 1 the smallest, class 2 the one nearest 0
    scores = classifier_criterion(classifier, y, 8)(cand)
    assert scores.argmin(1).tolist() == [1, 0, 2]
    logits = classifier(cand.flatten(0, 1)).view(3, 3, 3)
    expected = -logits.log_softmax(2).gather(2, y.view(3, 1, 1).expand(3, 3, 1)).squeeze(2)
    assert torch.allclose(scores, expected)  # the score is −log p(y | candidate), not its negative


def test_zscg_never_calls_backward():
    model = tiny_ssg(K=4)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    calls = []
    classifier[1].weight.register_hook(lambda g: calls.append("backward"))
    grad_mode = []

    def spy(cand):
        grad_mode.append(torch.is_grad_enabled())
        return classifier_criterion(classifier, torch.tensor([0, 1, 2, 0]), 8)(cand)

    x, lat = zscg(model, spy, 4, topk=2, generator=torch.Generator().manual_seed(0))
    assert not calls and not x.requires_grad and grad_mode and not any(grad_mode)
    assert lat.shape == (4, model.L)
    y = torch.tensor([1, 2])
    best, lat_best = zscg(model, classifier_criterion(classifier, y, 8), 2)
    with torch.no_grad():  # greedy top-1: no other node at the last layer (same path before it) is more probable for y
        alternatives = torch.stack([decode(model, torch.cat([lat_best[:, :-1], torch.full((2, 1), k)], 1))
                                    for k in range(model.K)], 1)
        logp = classifier(alternatives.flatten(0, 1).clamp(-1, 1)).log_softmax(1).view(2, model.K, 3)
        logp_y = logp.gather(2, y.view(2, 1, 1).expand(2, model.K, 1)).squeeze(2)
    assert torch.equal(lat_best[:, -1], logp_y.argmax(1)) and torch.equal(best, pick_last(alternatives, lat_best))


def test_latent_tree_classifier_and_bits():
    lat = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1], [1, 1]])
    y = torch.tensor([2, 2, 4, 5, 5])
    assert latent_tree_classifier(lat, y, lat, K=2).tolist() == [2, 2, 4, 5, 5]
    assert latent_tree_classifier(lat[:4], y[:4], torch.tensor([[1, 2]]), K=3).tolist() == [4]  # node (1,): tie → lowest
    assert latent_tree_classifier(lat, y, torch.tensor([[2, 0]]), K=3).tolist() == [2]  # unseen root child → root vote
    assert latent_bits(512, 128) == 1152 and latent_bits(2, 10) == 10 and math.isclose(latent_bits(8, 3), 9)
