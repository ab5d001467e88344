"""The appearance-to-structure network of the paper (section III-A, eqs. (2)-(3), Tables I and II).

The paper unrolls the gradient descent on its energy ``L(S)`` into a residual network: each residual
block approximates one gradient step (appendix A), and the network ``T_L`` reads the photo ``I`` and
returns, for every vertex, the residual that moves the regulariser's output ``S_bar`` towards the
ground truth::

    S = S_bar + T_L(I)                                    eq. (3)

:class:`AppearanceNet` is ``T_L``: a torchvision ResNet trunk (Table II's ResNet-18/34/50/101/152; the
paper's Table I is ResNet-50's), then the head of Table I:

* a 1x1 convolution to 128 channels, batch norm, ReLU (the paper's "Conv + BN + ReLU, 1x1, 128");
* a convolution whose kernel covers the whole last feature map (7x7 at 224 px) to ``3N`` = 10344
  channels, read as (N, 3) millimetres in the model's object frame.

The paper's last row also says "Conv + BN + ReLU"; a ReLU there would forbid negative residuals (a
vertex could only move along +x, +y, +z), so the kit's last layer is linear: a convolution with a bias,
no batch norm, no ReLU. The input size is a setting: the head's kernel is the size of the trunk's last
feature map for that input (input / 32, e.g. 3x3 at 96 px).

ImageNet weights are optional (``pretrained=True``): they are used only when torchvision's file is
already in the local torch cache (``torch.hub.get_dir()/checkpoints``), loaded with
``weights_only=True``; the kit never downloads them.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

__all__ = ["AppearanceNet", "BACKBONES", "HEAD_CHANNELS", "layer_table", "imagenet_weights_path"]

#: the trunks of Table II, by torchvision's names
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
#: channels after the head's 1x1 convolution (Table I)
HEAD_CHANNELS = 128


def _torchvision_model(backbone: str):
    import torchvision.models as tvm

    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    weights_enum = getattr(tvm, {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights",
                                 "resnet50": "ResNet50_Weights", "resnet101": "ResNet101_Weights",
                                 "resnet152": "ResNet152_Weights"}[backbone])
    return getattr(tvm, backbone), weights_enum.IMAGENET1K_V1


def imagenet_weights_path(backbone: str) -> Path:
    """Where torchvision keeps the ImageNet weights of ``backbone`` in the local torch cache (the file
    may be absent: the kit never downloads it)."""
    _, weights = _torchvision_model(backbone)
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]


class AppearanceNet(nn.Module):
    """``T_L`` of eq. (3): photo crops (B, 3, H, W) in [0, 1] -> per-vertex residuals (B, N, 3) in mm.

    Parameters
    ----------
    backbone : one of :data:`BACKBONES` (torchvision's ResNets; Table II).
    input_size : the side of the square input crop in px (224 in the paper); at least 32.
    n_vertices : N (3448 for the Surrey Face Model: 3N = 10344 outputs, as Table I).
    pretrained : start the trunk from torchvision's ImageNet weights, when they are in the local torch
        cache (:func:`imagenet_weights_path`); otherwise a FileNotFoundError says where to put them.
    seed : the initial weights' seed (the same network on every machine).

    Notes
    -----
    The crops are normalised with ImageNet's channel mean and std inside the network (whatever the
    trunk's start), so a caller passes plain [0, 1] images.
    """

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, backbone: str = "resnet18", input_size: int = 224, n_vertices: int = 3448,
                 pretrained: bool = False, seed: int = 0):
        super().__init__()
        make, _ = _torchvision_model(backbone)
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 32:
            raise ValueError(f"input_size must be an integer >= 32 (px), got {input_size!r}")
        if isinstance(n_vertices, bool) or not isinstance(n_vertices, int) or n_vertices < 1:
            raise ValueError(f"n_vertices must be a positive integer, got {n_vertices!r}")
        self.backbone, self.input_size, self.n_vertices = backbone, int(input_size), int(n_vertices)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = make(weights=None)
            if pretrained:
                path = imagenet_weights_path(backbone)
                if not path.is_file():
                    raise FileNotFoundError(
                        f"pretrained=True needs torchvision's ImageNet weights of {backbone} at {path}; the kit "
                        f"never downloads them (copy the file there, or train from scratch: pretrained=False)")
                net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            # the trunk: everything before torchvision's global pooling and classifier
            self.trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                       net.layer1, net.layer2, net.layer3, net.layer4)
            with torch.no_grad():
                c, h, w = self.trunk.eval()(torch.zeros(1, 3, self.input_size, self.input_size)).shape[1:]
            self.trunk.train()
            self.feature_size = (int(h), int(w))
            self.reduce = nn.Sequential(nn.Conv2d(c, HEAD_CHANNELS, 1, bias=False), nn.BatchNorm2d(HEAD_CHANNELS),
                                        nn.ReLU(inplace=True))
            # linear on purpose: residuals may be negative (see the module's docstring)
            self.regress = nn.Conv2d(HEAD_CHANNELS, 3 * self.n_vertices, kernel_size=self.feature_size)
            nn.init.zeros_(self.regress.bias)
            nn.init.normal_(self.regress.weight, std=1e-3)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)
        # the outputs' scaling (set_output_scaling): residual = offset_mean + offset_scale * regress(...)
        self.register_buffer("offset_mean", torch.zeros(self.n_vertices, 3))
        self.register_buffer("offset_scale", torch.ones(()))
        # channels-last ("NHWC") weights: on the CPU too the convolutions take oneDNN's channels-last
        # path (one 64 px crop through ResNet-18 on one thread about 1.7x faster; training the same)
        self.to(memory_format=torch.channels_last)

    def set_output_scaling(self, mean, scale: float) -> None:
        """Read the last layer's outputs in units of ``scale`` mm around ``mean`` (N, 3) mm: the
        training residuals' mean and spread, so that a network whose last layer gives zeros predicts
        the mean residual and the last layer learns numbers of order one."""
        mean = torch.as_tensor(mean, dtype=torch.float32)
        if mean.shape != (self.n_vertices, 3) or not torch.isfinite(mean).all():
            raise ValueError(f"mean must be finite with shape ({self.n_vertices}, 3), got {tuple(mean.shape)}")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number (mm), got {scale!r}")
        self.offset_mean.copy_(mean)
        self.offset_scale.fill_(float(scale))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        if tuple(images.shape[2:]) != (self.input_size, self.input_size):
            raise ValueError(f"images must be {self.input_size} x {self.input_size} px (the network's "
                             f"input_size), got {tuple(images.shape[2:])}")
        x = self.trunk(((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last))
        out = self.regress(self.reduce(x)).view(images.shape[0], self.n_vertices, 3)
        return self.offset_mean + self.offset_scale * out

    @torch.no_grad()
    def infer(self, crops, batch_size: int = 64) -> torch.Tensor:
        """The residuals of M crops (M, 3, S, S) in [0, 1], in evaluation mode and batches of
        ``batch_size`` on the network's device: (M, N, 3) float32 mm on the CPU. The network's mode
        (training or evaluation) is the same afterwards."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        crops = torch.as_tensor(crops, dtype=torch.float32)
        if len(crops) == 0:
            return torch.zeros((0, self.n_vertices, 3))
        was, device = self.training, self.offset_scale.device
        if was:   # switching walks every submodule: skipped when already evaluating (a trained network)
            self.eval()
        try:
            return torch.cat([self(crops[i:i + batch_size].to(device)).float().cpu()
                              for i in range(0, len(crops), batch_size)])
        finally:
            if was:
                self.train()

    def __repr__(self) -> str:
        return (f"AppearanceNet({self.backbone}, input {self.input_size} px, feature map "
                f"{self.feature_size[0]}x{self.feature_size[1]}, {self.n_vertices} x 3 outputs, "
                f"{sum(p.numel() for p in self.parameters()) / 1e6:.1f} M parameters)")


def layer_table(net: AppearanceNet) -> list[tuple[str, tuple[int, ...], int]]:
    """Table I from the network itself: ``[(block, output shape (C, H, W), parameters), ...]`` for one
    input crop, measured by running it (the trunk's stem, its four stages, the head's two layers)."""
    names = ["conv + max pooling", "residual stage 1", "residual stage 2", "residual stage 3",
             "residual stage 4", "conv 1x1 + BN + ReLU", f"conv {net.feature_size[0]}x{net.feature_size[1]} "
             "(linear)"]
    blocks = [nn.Sequential(*list(net.trunk)[:4]), *list(net.trunk)[4:], net.reduce, net.regress]
    rows = []
    was_training = net.training
    net.eval()
    with torch.no_grad():
        x = (torch.zeros(1, 3, net.input_size, net.input_size) - net.mean) / net.std
        for name, block in zip(names, blocks):
            x = block(x)
            rows.append((name, tuple(int(s) for s in x.shape[1:]), sum(p.numel() for p in block.parameters())))
    net.train(was_training)
    return rows
