"Toy densities, image datasets, and clear errors for missing or damaged data."
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT
from deepgen.config import ConfigError
from deepgen.data import (IMAGE_DATASETS, TOYS, DataError, dataset_stats, face_folder, fetch, fetch_main, fetched_from,
                          gaussian_log_prob, load_images, sample_toy, source_fingerprint, to_float, toy_grid,
                          toy_log_prob)


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


# --- the face tier: any folder of images ---------------------------------------------------------------------------

def _blob_faces(n, h=64, w=64, seed=0):
    "`n` smooth faces-like RGB images (uint8, n×h×w×3): a skin-toned background and a few Gaussian blobs."
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        img = np.ones((h, w, 3)) * rng.uniform(60, 200, 3)
        for _ in range(4):
            cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 16)
            img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))[..., None] * rng.uniform(-60, 60, 3)
        out[i] = img.clip(1, 255).round()
    return out


def _write_faces(folder, images, suffix=".png", start=0):
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"face_{start + i:04d}{suffix}")


@pytest.fixture
def face_env(tmp_path, monkeypatch):
    "An empty cache and no face settings from the caller's environment."
    monkeypatch.setenv("DEEPGEN_CACHE", str(tmp_path / "cache"))
    for var in ("DEEPGEN_FACES", "DEEPGEN_FACES_CROP", "DEEPGEN_FACES_SIZE", "DEEPGEN_FACES_TEST",
                "DEEPGEN_FACES_NAME", "DEEPGEN_FACES_ATTR"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_a_folder_of_faces_loads_with_its_split_name_and_no_black_frame(tmp_path, face_env):
    folder, images = tmp_path / "my faces", _blob_faces(40)
    _write_faces(folder, images)
    face_env.setenv("DEEPGEN_FACES", str(folder))
    face_env.setenv("DEEPGEN_FACES_NAME", "My faces")
    tr, te = load_images("celeba64", "train"), load_images("celeba64", "test")
    assert (len(tr), len(te)) == (36, 4) and tuple(tr.x.shape[1:]) == (3, 64, 64)
    expected = torch.from_numpy(images).permute(0, 3, 1, 2)
    assert torch.equal(tr.x, expected[:36]) and torch.equal(te.x, expected[36:])  # pixel for pixel: no frame
    assert int(tr.x[:, :, [0, -1]].min()) > 0 and int(tr.x[:, :, :, [0, -1]].min()) > 0
    assert tr.y.shape == (36, 0) and tr.classes == [] and tr.source.startswith("My faces:")
    before = source_fingerprint("celeba64", "train")
    # a changed folder or a changed setting gives another key, and the cache is decoded again
    _write_faces(folder, _blob_faces(1, seed=9), suffix=".jpg", start=40)
    assert source_fingerprint("celeba64", "train") != before
    assert len(load_images("celeba64", "train")) == 37
    after = source_fingerprint("celeba64", "train")
    face_env.setenv("DEEPGEN_FACES_TEST", "0.25")
    assert source_fingerprint("celeba64", "train") != after
    assert (len(load_images("celeba64", "train")), len(load_images("celeba64", "test"))) == (31, 10)
    # a list file of test names
    (tmp_path / "test.txt").write_text("face_0000.png\nface_0005.png\n")
    face_env.setenv("DEEPGEN_FACES_TEST", str(tmp_path / "test.txt"))
    te = load_images("celeba64", "test")
    assert len(te) == 2 and torch.equal(te.x, expected[[0, 5]])


def test_face_crop_never_pads_and_attributes_are_optional(tmp_path, face_env):
    folder = tmp_path / "faces"
    _write_faces(folder, _blob_faces(10, h=96, w=80))
    attr = "10\nSmiling Young\n" + "".join(f"face_{i:04d}.png {1 if i % 2 else -1} 1\n" for i in range(10))
    (folder / "list_attr_faces.txt").write_text(attr)
    face_env.setenv("DEEPGEN_FACES", str(folder))
    face_env.setenv("DEEPGEN_FACES_TEST", "2")
    ds = load_images("celeba64", "train")  # centre square 80×80, resized to 64×64
    assert ds.x.shape == (8, 3, 64, 64) and ds.classes == ["Smiling", "Young"] and ds.y[:, 0].tolist() == [0, 1] * 4
    face_env.setenv("DEEPGEN_FACES_CROP", "200")  # larger than the image: crop to the largest square, no frame
    assert torch.equal(load_images("celeba64", "train").x, ds.x)
    face_env.setenv("DEEPGEN_FACES_ATTR", "none")
    assert load_images("celeba64", "test").y.shape == (2, 0)


@pytest.mark.parametrize("env, words", [
    ({"DEEPGEN_FACES_TEST": "1.0"}, "a folder of 10 faces with test fraction 1.0 leaves no training images: lower DEEPGEN_FACES_TEST"),
    ({"DEEPGEN_FACES_TEST": "0.01"}, "leaves no test images: raise DEEPGEN_FACES_TEST"),
    ({"DEEPGEN_FACES_TEST": "1000"}, "a folder of 10 faces with 1000 test images leaves no training images"),
    ({"DEEPGEN_FACES_TEST": "-3"}, "DEEPGEN_FACES_TEST='-3' must be"),
    ({"DEEPGEN_FACES_CROP": "big"}, "DEEPGEN_FACES_CROP='big' must be center-square, none or a whole number"),
    ({"DEEPGEN_FACES_ATTR": "nowhere.txt"}, "attribute file nowhere.txt is missing"),
])
def test_bad_face_settings_are_one_line_errors_that_say_what_to_change(tmp_path, face_env, env, words):
    _write_faces(tmp_path / "faces", _blob_faces(10))
    face_env.setenv("DEEPGEN_FACES", str(tmp_path / "faces"))
    for k, v in env.items():
        face_env.setenv(k, v)
    with pytest.raises((DataError, ConfigError)) as err:
        load_images("celeba64", "train")
    assert "\n" not in str(err.value) and words in str(err.value) and "fetch" not in str(err.value)


def _celeba_like_mirror(mirror, n):
    "A mirror holding `n` CelebA-like half-resolution images (89×109) and their 40-attribute file."
    import tarfile
    from PIL import Image
    src = mirror.parent / f"src{n}" / "img_align_celeba_half"
    src.mkdir(parents=True)
    for i, im in enumerate(_blob_faces(n, h=109, w=89)):
        Image.fromarray(im).save(src / f"{i + 1:06d}.jpg")
    (mirror / "celeba").mkdir(parents=True, exist_ok=True)
    with tarfile.open(mirror / "celeba" / "celeba10k-aligned-89x109.tar", "w") as t:
        t.add(src, arcname="img_align_celeba_half")
    names = " ".join(f"A{k}" for k in range(40))
    rows = "".join(f"{i + 1:06d}.jpg" + " -1" * 39 + " 1\n" for i in range(n))
    (mirror / "celeba" / "list_attr_celeba_first10k.txt").write_text(f"{n}\n{names}\n{rows}")


def test_a_mirror_set_on_a_clone_that_already_fetched_is_used(tmp_path, empty_data, face_env, capsys):
    face_env.setenv("DEEPGEN_FACES_TEST", "0.25")
    _celeba_like_mirror(tmp_path / "m1", 8)
    fetch_main(["fetch", "celeba64", "--mirror", str(tmp_path / "m1")])
    assert (len(load_images("celeba64", "train")), len(load_images("celeba64", "test"))) == (6, 2)
    assert fetched_from("celeba64", tmp_path / "m1")
    _celeba_like_mirror(tmp_path / "m2", 12)  # the data load, but not from this mirror: fetch from it
    face_env.setenv("DEEPGEN_DATA_MIRROR", str(tmp_path / "m2"))
    fetch_main(["fetch", "celeba64"])
    assert len(load_images("celeba64", "train")) == 9 and fetched_from("celeba64", tmp_path / "m2")
    assert "celeba64 train: 9 images" in capsys.readouterr().out


def _use_mirror_celeba(tmp_path, monkeypatch):
    "Point DEEPGEN_DATA at the mirror's CelebA layout: the project's data/, else a copy fetched from the mirror."
    root = ROOT / "data"
    if (root / "celeba" / "img_align_celeba_half").is_dir() and not (root / "celeba" / "img_align_celeba").exists():
        monkeypatch.setenv("DEEPGEN_DATA", str(root))
        return
    mirror = os.environ.get("DEEPGEN_DATA_MIRROR")
    if not mirror or not (Path(mirror) / "celeba" / "celeba10k-aligned-89x109.tar").exists():
        pytest.skip("the mirror's CelebA is neither under data/ nor in $DEEPGEN_DATA_MIRROR")
    monkeypatch.setenv("DEEPGEN_DATA", str(tmp_path / "data"))
    fetch(["celeba64"], mirror)


def test_the_official_full_celeba_layout_loads_with_its_crop_split_and_attributes(tmp_path, face_env):
    "torchvision's CelebA layout (img_align_celeba/, 178×218, list_attr_celeba.txt): 178 px crop, last 1000 for test."
    from PIL import Image
    folder = tmp_path / "data" / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    n = 1004
    for i, im in enumerate(_blob_faces(n, h=218, w=178)):
        Image.fromarray(im).save(folder / f"{i + 1:06d}.jpg", quality=90)
    names = " ".join(f"A{k}" for k in range(39)) + " Young"
    rows = "".join(f"{i + 1:06d}.jpg" + " -1" * 39 + (" 1\n" if i % 2 else " -1\n") for i in range(n))
    (folder.parent / "list_attr_celeba.txt").write_text(f"{n}\n{names}\n{rows}")
    face_env.setenv("DEEPGEN_DATA", str(tmp_path / "data"))
    faces = face_folder()
    assert (faces.crop, faces.size, faces.test, faces.name) == (178, 64, 1000, "CelebA")
    tr, te = load_images("celeba64", "train"), load_images("celeba64", "test")
    assert (len(tr), len(te)) == (4, 1000) and tuple(tr.x.shape[1:]) == (3, 64, 64)
    assert tr.classes[-1] == "Young" and tr.y[:, -1].tolist() == [0, 1, 0, 1] and te.y.shape == (1000, 40)
    assert tr.source == "torchvision CelebA (aligned, 178 px crop)"
    assert int(tr.x[:, :, [0, -1]].min()) > 0  # a centre crop of a taller image: no black frame


def test_default_celeba_mirror_keeps_its_images_crop_and_split(tmp_path, face_env):
    _use_mirror_celeba(tmp_path, face_env)
    faces = face_folder()
    assert (faces.crop, faces.size, faces.test, faces.name) == (89, 64, 1000, "CelebA")
    tr, te = load_images("celeba64", "train"), load_images("celeba64", "test")
    assert (len(tr), len(te)) == (9000, 1000) and tr.y.shape == (9000, 40) and te.classes[-1] == "Young"
    assert tr.source == te.source == "mirror: first 10,000 aligned CelebA images at half resolution (89 px crop)"
    # the decoded pixels of results/cpu/tables/data/dataset_stats.csv (before faces could come from any folder)
    assert dataset_stats(te)["md5"] == "b7e00df1df3cc2e9058434ce9e5de67e"
    assert dataset_stats(tr)["md5"] == "fb33da86b530d5cbe04dbbd119ce6c76"
