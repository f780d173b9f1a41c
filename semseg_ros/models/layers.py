"""Small building blocks shared by the networks."""

from typing import Optional

import torch
from torch import nn, Tensor

from semseg_ros.models.registry import check_multiple


def check_image(name: str, image: Tensor, multiple: int) -> None:
    """Raise ValueError unless ``image`` is ``N x 3 x H x W`` with H, W multiples of ``multiple``.

    Args:
        name: Model name for the message.
        image: The network input.
        multiple: Required multiple of height and width.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f'{name} expects an N x 3 x H x W image tensor, '
                         f'got shape {tuple(image.shape)}')
    check_multiple(name, int(image.shape[-1]), int(image.shape[-2]), multiple)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave the channels of ``groups`` groups (ShuffleNet), as a reshape/transpose."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, groups, channels // groups, height, width)
    return x.transpose(1, 2).reshape(batch, channels, height, width)


class ConvBN(nn.Sequential):
    """Convolution without bias followed by batch norm (which ONNX Runtime folds into it)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1,
                 padding=None, dilation=1, groups=1, eps: float = 1e-5):
        """Build the pair; ``padding`` defaults to 'same' for odd kernels (dilation included)."""
        if padding is None:
            if isinstance(kernel_size, int):
                padding = dilation * (kernel_size - 1) // 2
            else:
                padding = tuple(dilation * (k - 1) // 2 for k in kernel_size)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                      bias=False),
            nn.BatchNorm2d(out_channels, eps=eps))


class ConcatDownsample(nn.Module):
    """Halve the resolution: a strided 3x3 conv concatenated with a 2x2 max-pool, BN, activation.

    The ENet initial block and the MiniNet downsample block. The BN after the concat is kept as
    one BN per branch: BN is per-channel, so this is the same function, and the conv half folds
    into its conv in ONNX Runtime. Without channel growth the block is the strided conv alone.
    """

    def __init__(self, in_channels: int, out_channels: int, eps: float = 1e-5,
                 activation: Optional[nn.Module] = None):
        """Build the block; ``activation`` defaults to ReLU."""
        super().__init__()
        self.use_pool = in_channels < out_channels
        conv_channels = out_channels - in_channels if self.use_pool else out_channels
        self.conv = ConvBN(in_channels, conv_channels, 3, stride=2, eps=eps)
        if self.use_pool:
            self.pool = nn.MaxPool2d(2, 2)
            self.pool_bn = nn.BatchNorm2d(in_channels, eps=eps)
        self.relu = activation if activation is not None else nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``N x in x H x W`` to ``N x out x H/2 x W/2``."""
        y = self.conv(x)
        if self.use_pool:
            y = torch.cat([y, self.pool_bn(self.pool(x))], 1)
        return self.relu(y)


class SegmentationNet(nn.Module):
    """Base of the networks: a name for messages and the input-size check.

    Args:
        name: Model name used in error messages.
    """

    input_multiple = 8

    def __init__(self, name: str):
        """Store the name."""
        super().__init__()
        self.name = name

    def check(self, image: Tensor) -> None:
        """Raise ValueError unless ``image`` is a batch this network can take."""
        check_image(self.name, image, self.input_multiple)
