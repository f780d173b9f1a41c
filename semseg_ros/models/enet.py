"""ENet.

A. Paszke, A. Chaurasia, S. Kim, E. Culurciello, "ENet: A Deep Neural Network Architecture
for Real-Time Semantic Segmentation", arXiv:1606.02147, 2016 (Table 1, Figure 2). Module
names follow the paper's table like PyTorch-ENet (davidtvs): ``initial_block``,
``downsample1_0``, ``regular1_1``, ``dilated2_2``, ``asymmetric2_3``, ..., ``upsample4_0``,
``regular4_1``, ..., ``transposed_conv``. The block internals follow the authors' Torch code
(github.com/e-lab/ENet-training, ``encoder.lua``/``decoder.lua``) where PyTorch-ENet differs:

* Bottleneck width is a quarter of the block's OUTPUT channels (16 and 32 in the two
  encoder downsampling bottlenecks, 16 and 4 in the decoder's upsampling ones).
* Initial block: 13-filter 3x3 stride-2 conv concatenated with a 2x2 max-pool, BN, PReLU.
* PReLU with one slope per channel, a separate one after every conv, in the encoder; ReLU
  in the decoder.
* Asymmetric bottleneck: 5x1 then 1x5 conv with no BN between (a factorised 5x5).
* Upsampling bottleneck: main branch 1x1 conv + BN then max-unpooling with the indices of the
  matching downsampling bottleneck; extension branch 1x1, 3x3 stride-2 transposed conv, 1x1.
* Full-resolution output by a 2x2 stride-2 transposed conv (with bias).

Spatial dropout follows the paper: p=0.01 up to bottleneck 1.4 and p=0.1 afterwards,
decoder included. Convolutions followed by BN have no bias (the Torch code keeps a redundant
bias on the 3x3 ones). Pool indices stay per plane as in PyTorch; the ``torch.onnx``
dynamo exporter maps max-pool-with-indices and max-unpool to ONNX correctly.

Complexity (19 classes): 0.364M parameters (paper Table 3: 0.37M) and 1.72 GMACs at 640x360.
No GMAC figure is registered: Table 3 gives 3.83 GFLOPs at 640x360, and its SegNet figure
(286 GFLOPs) is twice SegNet's MAC count at that size, so the paper counts a MAC as two FLOPs
and means about 1.92 GMACs; this faithful layout counts 1.72 (10% less, the rest presumably
the batch norms, PReLUs and additions the paper's counter included), too close to the test
tolerance to claim a match.
"""

from typing import Callable, Tuple

import torch
from torch import nn, Tensor
import torch.nn.functional as F

from semseg_ros.models.layers import ConcatDownsample, ConvBN, SegmentationNet
from semseg_ros.models.registry import register_model

# Batch-norm epsilon of the authors' Torch code.
BN_EPS = 1e-3

Activation = Callable[[int], nn.Module]

# Stages 2 and 3 after the downsampling: (kind, dilation) of each bottleneck, in order.
STAGE_2_3_LAYOUT = (('regular', 1), ('dilated', 2), ('asymmetric', 1), ('dilated', 4),
                    ('regular', 1), ('dilated', 8), ('asymmetric', 1), ('dilated', 16))
# Their attribute names, as in the paper's table: regular2_1 ... dilated2_8, regular3_0 ...
STAGES_2_3 = tuple(f'{kind}{stage}_{index + first}'
                   for stage, first in ((2, 1), (3, 0))
                   for index, (kind, _) in enumerate(STAGE_2_3_LAYOUT))


class ChannelPReLU(nn.PReLU):
    """Per-channel PReLU that exports to ONNX as ``a * x + (1 - a) * relu(x)``.

    The same function. The two products are depthwise 1x1 convolutions, so ONNX Runtime keeps
    them in its blocked (NCHWc) layout and fuses the sum: its own ``PRelu`` kernel with a
    per-channel slope, in plain NCHW between reorders, made ENet about twice as slow.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Apply the activation."""
        if torch.onnx.is_in_onnx_export():
            slope = self.weight.reshape(-1, 1, 1, 1)
            channels = slope.shape[0]
            return (F.conv2d(x, slope, groups=channels)
                    + F.conv2d(F.relu(x), 1 - slope, groups=channels))
        return super().forward(x)


def prelu(channels: int) -> nn.Module:
    """Per-channel PReLU (the encoder's activation)."""
    return ChannelPReLU(channels)


def relu(channels: int) -> nn.Module:
    """Return a ReLU, the decoder's activation (``channels`` is unused)."""
    return nn.ReLU(inplace=True)


class RegularBottleneck(nn.Module):
    """Residual bottleneck: 1x1 projection, 3x3 (dilated) or 5x1+1x5 conv, 1x1 expansion.

    Args:
        channels: Input and output channels.
        dilation: Dilation of the 3x3 conv.
        asymmetric: Use a 5x1 then 1x5 conv instead of the 3x3.
        dropout: Spatial dropout before the residual add.
        activation: Activation factory (:func:`prelu` or :func:`relu`).
    """

    def __init__(self, channels: int, dilation: int = 1, asymmetric: bool = False,
                 dropout: float = 0.1, activation: Activation = prelu):
        """Build the bottleneck."""
        super().__init__()
        internal = channels // 4
        self.project = nn.Sequential(ConvBN(channels, internal, 1, eps=BN_EPS),
                                     activation(internal))
        if asymmetric:
            conv = nn.Sequential(
                nn.Conv2d(internal, internal, (5, 1), padding=(2, 0), bias=False),
                ConvBN(internal, internal, (1, 5), eps=BN_EPS))
        else:
            conv = ConvBN(internal, internal, 3, dilation=dilation, eps=BN_EPS)
        self.conv = nn.Sequential(conv, activation(internal))
        self.expand = ConvBN(internal, channels, 1, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout)
        self.activation = activation(channels)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the bottleneck (same shape in and out)."""
        branch = self.dropout(self.expand(self.conv(self.project(x))))
        return self.activation(x + branch)


class DownsamplingBottleneck(nn.Module):
    """Halve the resolution: max-pool (indices kept) + zero channels, and a conv branch.

    The conv branch is a 2x2 stride-2 projection, a 3x3 conv and a 1x1 expansion.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float,
                 activation: Activation = prelu):
        """Build the bottleneck."""
        super().__init__()
        internal = out_channels // 4
        self.extra_channels = out_channels - in_channels
        self.project = nn.Sequential(ConvBN(in_channels, internal, 2, stride=2, padding=0,
                                            eps=BN_EPS), activation(internal))
        self.conv = nn.Sequential(ConvBN(internal, internal, 3, eps=BN_EPS),
                                  activation(internal))
        self.expand = ConvBN(internal, out_channels, 1, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout)
        self.activation = activation(out_channels)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Return the ``N x out x H/2 x W/2`` output and the max-pool indices."""
        main, indices = F.max_pool2d(x, 2, 2, return_indices=True)
        main = F.pad(main, (0, 0, 0, 0, 0, self.extra_channels))
        branch = self.dropout(self.expand(self.conv(self.project(x))))
        return self.activation(main + branch), indices


class UpsamplingBottleneck(nn.Module):
    """Double the resolution: 1x1 conv + max-unpooling, and a transposed-conv branch."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float,
                 activation: Activation = relu):
        """Build the bottleneck."""
        super().__init__()
        internal = out_channels // 4
        self.main = ConvBN(in_channels, out_channels, 1, eps=BN_EPS)
        self.project = nn.Sequential(ConvBN(in_channels, internal, 1, eps=BN_EPS),
                                     activation(internal))
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(internal, internal, 3, stride=2, padding=1, output_padding=1,
                               bias=False),
            nn.BatchNorm2d(internal, eps=BN_EPS),
            activation(internal))
        self.expand = ConvBN(internal, out_channels, 1, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout)
        self.activation = activation(out_channels)

    def forward(self, x: Tensor, indices: Tensor) -> Tensor:
        """Map ``N x in x H x W`` to ``N x out x 2H x 2W`` with the pool ``indices``."""
        height, width = indices.shape[-2:]
        main = F.max_unpool2d(self.main(x), indices, 2, 2,
                              output_size=(2 * height, 2 * width))
        branch = self.dropout(self.expand(self.conv(self.project(x))))
        return self.activation(main + branch)


class ENet(SegmentationNet):
    """ENet: ``N x 3 x H x W`` images to ``N x classes x H x W`` logits.

    Args:
        num_classes: Output channels.
        name: Model name used in error messages.
    """

    def __init__(self, num_classes: int, name: str = 'enet'):
        """Build the network."""
        super().__init__(name)
        self.initial_block = ConcatDownsample(3, 16, BN_EPS, activation=prelu(16))
        # Stage 1 (stride 4).
        self.downsample1_0 = DownsamplingBottleneck(16, 64, dropout=0.01)
        self.regular1_1 = RegularBottleneck(64, dropout=0.01)
        self.regular1_2 = RegularBottleneck(64, dropout=0.01)
        self.regular1_3 = RegularBottleneck(64, dropout=0.01)
        self.regular1_4 = RegularBottleneck(64, dropout=0.01)
        # Stage 2 (stride 8), then stage 3: stage 2 repeated without the downsampling.
        self.downsample2_0 = DownsamplingBottleneck(64, 128, dropout=0.1)
        for name, (kind, dilation) in zip(STAGES_2_3, STAGE_2_3_LAYOUT * 2):
            self.add_module(name, RegularBottleneck(128, dilation=dilation,
                                                    asymmetric=kind == 'asymmetric'))
        # Stages 4 and 5: decoder with ReLU.
        self.upsample4_0 = UpsamplingBottleneck(128, 64, dropout=0.1)
        self.regular4_1 = RegularBottleneck(64, activation=relu)
        self.regular4_2 = RegularBottleneck(64, activation=relu)
        self.upsample5_0 = UpsamplingBottleneck(64, 16, dropout=0.1)
        self.regular5_1 = RegularBottleneck(16, activation=relu)
        self.transposed_conv = nn.ConvTranspose2d(16, num_classes, 2, stride=2)

    def forward(self, image: Tensor) -> Tensor:
        """Return the class logits at the input resolution."""
        self.check(image)
        x = self.initial_block(image)
        x, indices1 = self.downsample1_0(x)
        x = self.regular1_4(self.regular1_3(self.regular1_2(self.regular1_1(x))))
        x, indices2 = self.downsample2_0(x)
        for name in STAGES_2_3:
            x = getattr(self, name)(x)
        x = self.regular4_2(self.regular4_1(self.upsample4_0(x, indices2)))
        x = self.regular5_1(self.upsample5_0(x, indices1))
        return self.transposed_conv(x)


@register_model(paper='Paszke et al., ENet, arXiv:1606.02147 2016', paper_params=0.37e6,
                input_multiple=8, output_stride=1)
def enet(num_classes: int = 11, **kwargs) -> ENet:
    """Build ENet with the paper's layout."""
    return ENet(num_classes, name='enet', **kwargs)
