"""The appearance-to-structure network (dualface_lite.resnet): Table I's head on torchvision's trunks,
shapes at any input size, a linear last layer, seeded weights, ImageNet weights only from the local
cache, and the errors on bad input."""
import numpy as np
import pytest
import torch

from dualface_lite.resnet import BACKBONES, HEAD_CHANNELS, AppearanceNet, imagenet_weights_path, layer_table


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # conftest.py: small torch work, one thread


@pytest.mark.parametrize("size", [64, 96])
def test_output_shape_and_head_at_any_input_size(size):
    net = AppearanceNet("resnet18", input_size=size, n_vertices=3448).eval()
    out = net(torch.rand(2, 3, size, size))
    assert out.shape == (2, 3448, 3) and out.dtype == torch.float32
    assert net.feature_size == (size // 32, size // 32)                 # the head's kernel covers the map
    assert net.regress.kernel_size == net.feature_size and net.regress.out_channels == 3 * 3448


def test_table_one_from_the_network():
    """ResNet-50 at 224 px gives the feature maps of the paper's Table I."""
    rows = layer_table(AppearanceNet("resnet50", input_size=224))
    shapes = [r[1] for r in rows]
    assert shapes == [(64, 56, 56), (256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7),
                      (HEAD_CHANNELS, 7, 7), (10344, 1, 1)]
    assert rows[-1][2] == HEAD_CHANNELS * 7 * 7 * 10344 + 10344       # 7x7 kernel to 3N, with a bias


def test_last_layer_is_linear_and_learns_negative_residuals():
    """A ReLU at the end (the paper's table read literally) could not output -1 mm; the kit's can."""
    torch.manual_seed(0)
    net = AppearanceNet("resnet18", input_size=32, n_vertices=4)
    x = torch.rand(4, 3, 32, 32)
    target = torch.full((4, 4, 3), -1.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(60):
        opt.zero_grad()
        loss = (net(x) - target).pow(2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = net(x)                      # (training mode: batch norm on this batch, as in the steps)
    assert loss.item() < 0.05 and float(out.max()) < -0.8
    assert isinstance(list(net.modules())[-1], torch.nn.Conv2d)          # nothing after the last convolution


def test_seeded_weights():
    a, b, c = (AppearanceNet("resnet18", 64, 10, seed=s) for s in (0, 0, 1))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["trunk.0.weight"], sc["trunk.0.weight"])


def test_imagenet_weights_only_from_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = imagenet_weights_path("resnet18")
    assert path.parent == tmp_path / "hub" / "checkpoints" and path.name.startswith("resnet18-")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        AppearanceNet("resnet18", 64, 10, pretrained=True)
    import torchvision

    saved = torchvision.models.resnet18(weights=None).state_dict()   # stands in for ImageNet's file
    path.parent.mkdir(parents=True)
    torch.save(saved, path)
    net = AppearanceNet("resnet18", 64, 10, pretrained=True)
    assert torch.equal(net.trunk[0].weight, saved["conv1.weight"])
    assert torch.equal(net.trunk[7][1].conv2.weight, saved["layer4.1.conv2.weight"])


def test_bad_inputs():
    with pytest.raises(ValueError, match="backbone"):
        AppearanceNet("vgg16")
    with pytest.raises(ValueError, match="input_size"):
        AppearanceNet("resnet18", input_size=16)
    with pytest.raises(ValueError, match="n_vertices"):
        AppearanceNet("resnet18", 64, n_vertices=0)
    net = AppearanceNet("resnet18", 64, 10)
    with pytest.raises(ValueError, match="64 x 64"):
        net(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        net(torch.rand(1, 64, 64))
    assert set(BACKBONES) == {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
    with torch.no_grad():
        assert np.isfinite(net.eval()(torch.rand(1, 3, 64, 64)).sum().item())


def test_output_scaling_starts_at_the_mean_residual():
    """With the last layer at zero the network predicts the training residuals' mean (the "bias alone"
    baseline); its outputs are read in units of the scale; the scaling travels with the state dict."""
    net = AppearanceNet("resnet18", input_size=32, n_vertices=5).eval()
    mean = torch.arange(15, dtype=torch.float32).view(5, 3)
    net.set_output_scaling(mean, 2.5)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        raw = net(x) - mean                                       # 2.5 x the last layer's outputs
        torch.nn.init.zeros_(net.regress.weight)
        assert torch.equal(net(x), mean.expand(3, 5, 3))
    assert raw.abs().max() > 0
    other = AppearanceNet("resnet18", input_size=32, n_vertices=5)
    other.load_state_dict(net.state_dict())
    assert torch.equal(other.offset_mean, mean) and float(other.offset_scale) == 2.5
    with pytest.raises(ValueError, match="mean must be finite"):
        net.set_output_scaling(torch.zeros(4, 3), 1.0)
    with pytest.raises(ValueError, match="scale must be a positive"):
        net.set_output_scaling(mean, 0.0)


def test_infer_is_the_forward_pass_in_batches_and_keeps_the_mode():
    """One batched no-grad loop (training's validation and prediction both use it): the same numbers as
    one forward pass in evaluation mode, whatever the batch size; the network's mode is unchanged."""
    net = AppearanceNet("resnet18", input_size=32, n_vertices=5, seed=1)
    net.set_output_scaling(torch.randn(5, 3), 1.5)
    x = torch.rand(7, 3, 32, 32)
    net.train()
    out = net.infer(x, batch_size=3)
    assert net.training and out.shape == (7, 5, 3) and not out.requires_grad
    with torch.no_grad():
        ref = net.eval()(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert not net.training
    torch.testing.assert_close(net.infer(x, batch_size=7), net.infer(x, batch_size=2), atol=1e-5, rtol=1e-5)
    assert net.infer(torch.zeros(0, 3, 32, 32)).shape == (0, 5, 3)
    with pytest.raises(ValueError, match="batch_size"):
        net.infer(x, batch_size=0)


def test_channels_last_weights_give_the_nchw_outputs():
    """The convolutions keep channels-last weights (oneDNN's faster path on the CPU) after construction and
    after a save / load round trip; the layout changes no output beyond float rounding."""
    import io

    def conv_weights(m):
        return [c.weight for c in m.modules() if isinstance(c, torch.nn.Conv2d)]

    net = AppearanceNet("resnet18", input_size=64, n_vertices=20, seed=0)
    with torch.no_grad():
        net.regress.weight.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(1))   # outputs of order 1
        net.train()(torch.rand(8, 3, 64, 64))               # batch-norm statistics of their own
    net.eval()
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights(net))
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    loaded = AppearanceNet("resnet18", input_size=64, n_vertices=20, seed=3).eval()
    loaded.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights(loaded))
    nchw = AppearanceNet("resnet18", input_size=64, n_vertices=20).eval()
    nchw.load_state_dict(net.state_dict())
    nchw.to(memory_format=torch.contiguous_format)
    assert all(w.is_contiguous() for w in conv_weights(nchw))
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        out, again = net(x), loaded(x)
        plain = nchw.regress(nchw.reduce(nchw.trunk((x - nchw.mean) / nchw.std))).view(3, 20, 3)
        plain = nchw.offset_mean + nchw.offset_scale * plain            # the forward pass in NCHW throughout
    assert float(out.abs().max()) > 0.1
    assert torch.equal(out, again)
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-5 * float(plain.abs().max()))
