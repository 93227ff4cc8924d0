"Shapes and conditioning of the shared networks."
import pytest
import torch

from deepgen.nets import AdaGN, ConvDecoder, ConvEncoder, SinusoidalEmbedding, UNet, count_params, groups_for, mlp


@pytest.mark.parametrize("size, ch", [(28, 1), (32, 3), (64, 3)])
def test_unet_keeps_shape(size, ch):
    net = UNet(ch, ch=16, ch_mult=(1, 2, 2), attn_levels=(1,))
    assert net(torch.randn(2, ch, size, size), torch.rand(2)).shape == (2, ch, size, size)


@pytest.mark.parametrize("size, ch", [(28, 1), (32, 3), (64, 3)])
def test_encoder_decoder_round_trip_shapes(size, ch):
    z = ConvEncoder(size, ch, 12)(torch.randn(3, ch, size, size))
    assert z.shape == (3, 12) and ConvDecoder(size, 12, ch)(z).shape == (3, ch, size, size)


def test_unsupported_image_size_is_rejected():
    with pytest.raises(ValueError, match="image size 48"):
        ConvEncoder(48, 3, 8)


def test_time_and_style_change_the_output():
    torch.manual_seed(0)
    net = UNet(1, ch=16, style_dim=4).eval()
    x = torch.randn(1, 1, 28, 28)
    base = net(x, torch.tensor([1.0]), torch.zeros(1, 4))
    assert not torch.allclose(base, net(x, torch.tensor([500.0]), torch.zeros(1, 4)))
    norm = AdaGN(8, 4)
    torch.nn.init.normal_(norm.to_scale_shift.weight)
    h = torch.randn(2, 8, 5, 5)
    assert not torch.allclose(norm(h, torch.zeros(2, 4)), norm(h, torch.ones(2, 4)))


def test_sinusoidal_embedding_values():
    e = SinusoidalEmbedding(4)(torch.tensor([0.0, 2.0]))
    assert torch.allclose(e[0], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert torch.allclose(e[1, 0], torch.sin(torch.tensor(2.0)))


def test_count_params_of_mlp():
    assert count_params(mlp(3, 2, hidden=10, depth=2)) == (3 * 10 + 10) + (10 * 10 + 10) + (10 * 2 + 2)


@pytest.mark.parametrize("ch", [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512])
def test_groups_keep_at_least_four_channels_each(ch):
    g = groups_for(ch)
    assert ch % g == 0 and 1 <= g <= 32 and (ch // g >= 4 or g == 1)
    # the most groups that satisfy this: one more divisor would leave fewer than 4 channels or exceed 32
    assert not any(ch % h == 0 and ch // h >= 4 for h in range(g + 1, 33))


def test_course_widths_are_not_instance_norm():
    assert [groups_for(c) for c in (16, 32, 64, 128)] == [4, 8, 16, 32]
    norms = [m for m in UNet(1, ch=32).modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_channels // m.num_groups >= 4 for m in norms)
