"""MiniNet-v2 and MiniNet-v2-cpu.

I. Alonso, L. Riazuelo, A. C. Murillo, "MiniNet: An Efficient Semantic Segmentation ConvNet
for Real-Time Robotic Applications", IEEE Transactions on Robotics 36(4), 2020 (Table I,
section IV-B). Follows the authors' code (github.com/Shathe/MiniNet-v2: ``Mininet.py``, the
TensorFlow training code, and ``evaluate_time_pytorch.py``, their PyTorch port):

* Downsample block: a strided 3x3 conv giving ``out - in`` channels concatenated with a 2x2
  max-pool of the input, then BN and ReLU.
* Residual separable module: depthwise 3x3 (BN, ReLU), pointwise 1x1, BN, dropout, residual
  add, ReLU (the PyTorch port's form, which has a BN+ReLU between the two convolutions).
* Multi-dilation module: two parallel depthwise 3x3 convs, rate 1 and rate r (each BN, ReLU),
  summed, then pointwise 1x1, BN, dropout (0.25 in the feature extractor), residual, ReLU.
* Decoder: a 3x3 stride-2 transposed conv (BN, ReLU) to stride 4, plus a refinement branch of
  two downsample blocks on the raw image, two (cpu: one) pairs of residual separable modules,
  then a 3x3 stride-2 transposed conv to the classes: logits at HALF the input resolution.

Choices where the sources differ: the dilation rates of the second multi-dilation group follow
the TensorFlow code that trained the paper's models (1, 2, 8, 16; the PyTorch port has
1, 2, 4, 8); dropout is spatial (``Dropout2d``) as in the PyTorch port; the transposed conv
before a BN has no bias; the last transposed conv uses padding 1 and output padding 1 so the
logits are exactly ``H/2 x W/2`` (the port's padding 0 gives one extra row and column). The BN
after the downsample concat is stored as one BN per branch (see ``ConcatDownsample``).

MiniNet-v2-cpu removes modules as the paper and code do: one pair of residual modules at
stride 4 (instead of five), three multi-dilation pairs (rates 2, 4, 8; instead of eight), and
one residual pair in the decoder (instead of two).

Complexity (``count_parameters``/``count_gmacs``, 19 classes as in the paper's Cityscapes
figures): mininet_v2 0.517M parameters and 6.40 GMACs at 1024x512 (paper: 0.52M, 6.45);
mininet_v2_cpu 0.273M parameters and 0.835 GMACs at 512x256 (paper: 0.27M, 0.84).
"""

from typing import Sequence

import torch
from torch import nn, Tensor

from semseg_ros.models.layers import ConcatDownsample, ConvBN, SegmentationNet
from semseg_ros.models.registry import register_model

# MiniNet convention (TensorFlow defaults ported to PyTorch).
BN_EPS = 1e-3


class ResidualSeparable(nn.Module):
    """Residual depthwise-separable module: dw 3x3, BN, ReLU, pw 1x1, BN, dropout, add, ReLU."""

    def __init__(self, channels: int, dilation: int = 1, dropout: float = 0.0):
        """Build the module with a depthwise conv of the given dilation."""
        super().__init__()
        self.depthwise = ConvBN(channels, channels, 3, dilation=dilation, groups=channels,
                                eps=BN_EPS)
        self.pointwise = ConvBN(channels, channels, 1, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the module (same shape in and out)."""
        y = self.pointwise(torch.relu(self.depthwise(x)))
        return self.relu(self.dropout(y) + x)


class MultiDilationSeparable(nn.Module):
    """Two parallel depthwise 3x3 convs (rate 1 and rate r) summed, pw 1x1, BN, residual."""

    def __init__(self, channels: int, dilation: int, dropout: float = 0.0):
        """Build the module; ``dilation`` is the rate of the second depthwise branch."""
        super().__init__()
        self.depthwise = ConvBN(channels, channels, 3, groups=channels, eps=BN_EPS)
        self.depthwise_dilated = ConvBN(channels, channels, 3, dilation=dilation,
                                        groups=channels, eps=BN_EPS)
        self.pointwise = ConvBN(channels, channels, 1, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the module (same shape in and out)."""
        y = torch.relu(self.depthwise(x)) + torch.relu(self.depthwise_dilated(x))
        y = self.pointwise(y)
        return self.relu(self.dropout(y) + x)


class UpsampleBlock(nn.Sequential):
    """Double the resolution: 3x3 stride-2 transposed conv, BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        """Build the block."""
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1,
                               output_padding=1, bias=False),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
            nn.ReLU(inplace=True))


class MiniNetV2(SegmentationNet):
    """MiniNet-v2: ``N x 3 x H x W`` images to ``N x classes x H/2 x W/2`` logits.

    Args:
        num_classes: Output channels.
        stage2_modules: Residual separable modules at stride 4 (rate 1).
        stage3_dilations: Rate r of each multi-dilation module at stride 8.
        decoder_modules: Residual separable modules after the refinement add.
        dropout: Dropout of the multi-dilation modules.
        name: Model name used in error messages.
    """

    def __init__(self, num_classes: int, stage2_modules: int, stage3_dilations: Sequence[int],
                 decoder_modules: int, dropout: float = 0.25, name: str = 'mininet_v2'):
        """Build the network."""
        super().__init__(name)
        self.down1 = ConcatDownsample(3, 16, BN_EPS)
        self.down2 = ConcatDownsample(16, 64, BN_EPS)
        self.stage2 = nn.Sequential(*[ResidualSeparable(64) for _ in range(stage2_modules)])
        self.down3 = ConcatDownsample(64, 128, BN_EPS)
        self.stage3 = nn.Sequential(*[MultiDilationSeparable(128, rate, dropout)
                                      for rate in stage3_dilations])
        self.up1 = UpsampleBlock(128, 64)
        self.refine = nn.Sequential(ConcatDownsample(3, 16, BN_EPS),
                                    ConcatDownsample(16, 64, BN_EPS))
        self.decoder = nn.Sequential(*[ResidualSeparable(64) for _ in range(decoder_modules)])
        self.classifier = nn.ConvTranspose2d(64, num_classes, 3, stride=2, padding=1,
                                             output_padding=1)

    def forward(self, image: Tensor) -> Tensor:
        """Return the class logits at half the input resolution."""
        self.check(image)
        x = self.stage2(self.down2(self.down1(image)))
        x = self.stage3(self.down3(x))
        x = self.up1(x) + self.refine(image)
        return self.classifier(self.decoder(x))


def _pairs(rates: Sequence[int]) -> list:
    """Expand each rate r into the code's pair of modules: rate 1, then rate r."""
    return [rate for r in rates for rate in (1, r)]


@register_model(paper='Alonso et al., MiniNet, IEEE T-RO 2020', paper_params=0.52e6,
                paper_gmacs={(1024, 512): 6.45}, input_multiple=8, output_stride=2)
def mininet_v2(num_classes: int = 11, **kwargs) -> MiniNetV2:
    """MiniNet-v2 (GPU version): 10 + 16 + 4 modules."""
    return MiniNetV2(num_classes, stage2_modules=10,
                     stage3_dilations=_pairs([2, 4, 8, 16, 1, 2, 8, 16]), decoder_modules=4,
                     name='mininet_v2', **kwargs)


@register_model(paper='Alonso et al., MiniNet, IEEE T-RO 2020 (MiniNet-v2-cpu)',
                paper_params=0.27e6, paper_gmacs={(512, 256): 0.84}, input_multiple=8,
                output_stride=2)
def mininet_v2_cpu(num_classes: int = 11, **kwargs) -> MiniNetV2:
    """MiniNet-v2-cpu: 2 + 6 + 2 modules."""
    return MiniNetV2(num_classes, stage2_modules=2, stage3_dilations=_pairs([2, 4, 8]),
                     decoder_modules=2, name='mininet_v2_cpu', **kwargs)
