"""The U-Net: any input size, linear output, rebuild from its config, receptive field bound."""

import numpy as np
import pytest
import torch

from nt2c.denoiser.network import UNet, build_model, pad_to_multiple


@pytest.mark.parametrize("shape", [(1, 1, 33, 47), (2, 1, 64, 64), (1, 1, 7, 101), (3, 1, 130, 31)])
def test_output_shape_equals_input_shape(shape):
    net = UNet(width=4)
    with torch.no_grad():
        out = net(torch.randn(*shape))
    assert out.shape == shape
    assert out.dtype == torch.float32


def test_default_architecture_and_exported_name():
    import nt2c

    net = nt2c.UNet()
    assert (net.width, net.first_kernel, net.depth) == (32, 3, 5)
    assert len(net.encoders) == 5 and len(net.decoders) == 5  # five pooling and five up-sampling blocks
    assert net.multiple == 32
    assert isinstance(net.head, torch.nn.Conv2d)  # linear output: no activation after the last layer


def test_linear_output_can_be_negative_and_large():
    net = UNet(width=4, depth=2)
    with torch.no_grad():
        net.head.bias.fill_(-5.0)
        out = net(torch.zeros(1, 1, 16, 16))
    assert float(out.max()) < -4.0  # no ReLU/sigmoid at the output


def test_config_round_trip_gives_same_function():
    torch.manual_seed(0)
    net = UNet(width=6, first_kernel=5, depth=3)
    twin = build_model(net.config())
    twin.load_state_dict(net.state_dict())
    x = torch.randn(1, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(net(x), twin(x))


@pytest.mark.parametrize("kwargs", [dict(width=1), dict(first_kernel=4), dict(depth=0)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        UNet(**kwargs)


def test_build_model_rejects_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model({"arch": "topaz.UDenoiseNet"})
    with pytest.raises(ValueError, match="unknown UNet arguments"):
        build_model({"arch": "nt2c.UNet", "nf": 48})


def test_pad_matches_forward_padding():
    x = torch.arange(5 * 7, dtype=torch.float32).reshape(5, 7)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (8, 8)
    assert torch.equal(padded[:5, :7], x)
    assert torch.equal(padded[5, :7], x[3])  # reflection without repeating the edge row
    tiny = pad_to_multiple(torch.ones(2, 3), 32)  # smaller than the padding: edge replication
    assert tiny.shape == (32, 32) and torch.all(tiny == 1)


@pytest.mark.parametrize(
    "kwargs", [dict(width=4, depth=2, first_kernel=3), dict(width=4, depth=3, first_kernel=7)]
)
def test_receptive_radius_bounds_the_measured_dependence(kwargs):
    torch.manual_seed(0)
    net = UNet(**kwargs)
    size = 4 * net.receptive_radius() // net.multiple * net.multiple + net.multiple
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    c = size // 2
    net(x)[0, 0, c, c].backward()
    ys, xs = np.nonzero(x.grad[0, 0].numpy())
    measured = max(c - ys.min(), ys.max() - c, c - xs.min(), xs.max() - c)
    assert 0 < measured <= net.receptive_radius()


def test_default_is_much_cheaper_than_topaz_udenoisenet():
    # UDenoiseNet (nf=48, 11x11 first kernel, 97->64->32->1 full-resolution block): ~150 k MAC/px
    assert UNet().macs_per_pixel() < 30e3
    assert UNet(width=48).macs_per_pixel() > 2 * UNet().macs_per_pixel()
