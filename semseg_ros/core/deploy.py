"""Deployment rewrites of a trained network: same function, faster kernels.

ONNX Runtime's CPU ConvTranspose is slow (a GEMM followed by col2im). A stride-2, 3x3
transposed convolution with padding 1 and output padding 1 equals a 2x2 convolution over
the input padded by one row and column, giving the four output phases as channels,
followed by a pixel shuffle (ONNX DepthToSpace) -- the sub-pixel form of Shi et al.,
CVPR 2016. A BatchNorm right after the transposed conv is folded into the new weights.
The rewrite is exact up to float rounding; tests compare it with the original network.
"""

import copy

import torch
from torch import nn
import torch.nn.functional as F

# Kernel tap of the transposed conv used by output phase a (0 even, 1 odd) and input
# offset d (0: row m, 1: row m + 1), for stride 2, kernel 3, padding 1; None: no tap.
_TAP = ((1, None), (2, 0))


class SubPixelConvTranspose(nn.Module):
    """A 3x3 stride-2 transposed conv (pad 1, output pad 1) as pad, 2x2 conv, pixel shuffle."""

    def __init__(self, transposed: nn.ConvTranspose2d, batchnorm: nn.BatchNorm2d = None):
        """Build the equivalent module from ``transposed`` (and a following ``batchnorm``)."""
        super().__init__()
        if not is_rewritable(transposed):
            raise ValueError(f'cannot rewrite {transposed}: only 3x3, stride 2, padding 1, '
                             'output padding 1, dilation 1, groups 1 is supported')
        weight = transposed.weight.detach()  # in x out x 3 x 3
        in_channels, out_channels = weight.shape[:2]
        bias = (transposed.bias.detach() if transposed.bias is not None
                else torch.zeros(out_channels))
        scale = torch.ones(out_channels)
        if batchnorm is not None:
            scale = batchnorm.weight.detach() / torch.sqrt(batchnorm.running_var + batchnorm.eps)
            bias = (bias - batchnorm.running_mean) * scale + batchnorm.bias.detach()
        kernel = torch.zeros(out_channels, 2, 2, in_channels, 2, 2)
        for a in range(2):
            for b in range(2):
                for di in range(2):
                    for dj in range(2):
                        ki, kj = _TAP[a][di], _TAP[b][dj]
                        if ki is not None and kj is not None:
                            kernel[:, a, b, :, di, dj] = weight[:, :, ki, kj].t()
        kernel = kernel * scale.view(-1, 1, 1, 1, 1, 1)
        self.conv = nn.Conv2d(in_channels, out_channels * 4, 2, bias=True)
        # Channel o * 4 + a * 2 + b holds output phase (a, b), the order pixel_shuffle reads.
        self.conv.weight.data = kernel.reshape(out_channels * 4, in_channels, 2, 2)
        self.conv.bias.data = bias.repeat_interleave(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``N x in x H x W`` to ``N x out x 2H x 2W``."""
        return F.pixel_shuffle(self.conv(F.pad(x, (0, 1, 0, 1))), 2)


def is_rewritable(module: nn.Module) -> bool:
    """Whether ``module`` is a transposed conv :class:`SubPixelConvTranspose` can replace."""
    return (isinstance(module, nn.ConvTranspose2d) and module.kernel_size == (3, 3)
            and module.stride == (2, 2) and module.padding == (1, 1)
            and module.output_padding == (1, 1) and module.dilation == (1, 1)
            and module.groups == 1)


def _rewrite(parent: nn.Module) -> int:
    count = 0
    names = list(parent._modules)
    for index, name in enumerate(names):
        child = parent._modules[name]
        if is_rewritable(child):
            following = parent._modules[names[index + 1]] if index + 1 < len(names) else None
            if isinstance(parent, nn.Sequential) and isinstance(following, nn.BatchNorm2d):
                parent._modules[name] = SubPixelConvTranspose(child, following)
                parent._modules[names[index + 1]] = nn.Identity()
            else:
                parent._modules[name] = SubPixelConvTranspose(child)
            count += 1
        elif child is not None:
            count += _rewrite(child)
    return count


def deployable(network: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``network`` with transposed convs in sub-pixel form.

    The network itself is not modified. BatchNorms are folded only where they directly
    follow the transposed conv inside an ``nn.Sequential`` (so the data flow is certain).
    """
    network = copy.deepcopy(network).eval()
    with torch.no_grad():
        _rewrite(network)
    return network
