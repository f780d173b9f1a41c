"""Small building blocks shared by the networks."""

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
