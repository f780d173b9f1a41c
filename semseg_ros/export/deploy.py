"""Rewrites of a network for its INT8 graph: the same function in ops ONNX Runtime runs in int8.

ONNX Runtime's CPU provider quantizes ``Conv`` (to ``QLinearConv``, run channels-last),
``MaxPool``, ``Add``, ``Concat`` and the data-movement ops, but not ``ConvTranspose`` nor a
``BatchNormalization`` left on its own: those run in float between a dequantize and a
quantize, and they also stop its channels-last layout from spreading, so the int8 graph of the
plain network was slower than the float one. Two exact rewrites remove them:

* A stride-2 transposed conv (3x3 with padding 1 and output padding 1, or 2x2 with no
  padding) becomes one ordinary conv giving the four output phases as channels, followed by
  the interleave (a pixel shuffle) written as channels-last reshapes and transposes, which
  int8 tensors pass through and which cancel against the layout transposes around the
  quantized convs. A BatchNorm right after it is folded in. For the 3x3 kernel the 2x2 conv
  has 16 taps where 9 are used (the rest are zero weights); in int8 that is still faster
  than a float ``ConvTranspose``. (Shi et al., "Real-Time Single Image and Video
  Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016.)
* The BatchNorm after the max-pool branch of a downsample block becomes a depthwise 1x1
  conv (its per-channel scale and shift), which quantizes like any conv.

The float graph keeps the original network: measured on this project's CPU, these rewrites
made the float graph slower (ONNX Runtime's blocked float layout does not pass the reshapes).
"""

import copy

import torch
from torch import nn, Tensor
import torch.nn.functional as F

from semseg_ros.models.layers import ConcatDownsample

# Kernel tap of a 3x3, stride-2, padding-1 transposed conv used by output phase p (0: even
# rows, 1: odd rows) reading input row m + d (d = 0 or 1); None: no tap.
_TAPS_3X3 = ((1, None), (2, 0))


def batchnorm_scale_shift(batchnorm: nn.BatchNorm2d):
    """Return the per-channel ``(scale, shift)`` of an eval-mode BatchNorm."""
    scale = batchnorm.weight.detach() / torch.sqrt(batchnorm.running_var + batchnorm.eps)
    return scale, batchnorm.bias.detach() - batchnorm.running_mean * scale


def batchnorm_as_conv(batchnorm: nn.BatchNorm2d) -> nn.Conv2d:
    """Return the depthwise 1x1 conv computing an eval-mode BatchNorm."""
    channels = batchnorm.num_features
    scale, shift = batchnorm_scale_shift(batchnorm)
    conv = nn.Conv2d(channels, channels, 1, groups=channels, bias=True)
    conv.weight.data = scale.reshape(-1, 1, 1, 1).clone()
    conv.bias.data = shift.clone()
    return conv


def is_subpixel_rewritable(module: nn.Module) -> bool:
    """Whether ``module`` is a transposed conv :class:`SubPixelConvTranspose` can replace."""
    if not isinstance(module, nn.ConvTranspose2d) or module.stride != (2, 2):
        return False
    if module.dilation != (1, 1) or module.groups != 1:
        return False
    return ((module.kernel_size, module.padding, module.output_padding) in (
        ((3, 3), (1, 1), (1, 1)), ((2, 2), (0, 0), (0, 0))))


class SubPixelConvTranspose(nn.Module):
    """A stride-2 transposed conv as a conv giving the four output phases, then an interleave.

    Args:
        transposed: A transposed conv accepted by :func:`is_subpixel_rewritable`.
        batchnorm: An eval-mode BatchNorm applied right after it, folded in (optional).

    Raises:
        ValueError: The transposed conv has another configuration.
    """

    def __init__(self, transposed: nn.ConvTranspose2d, batchnorm: nn.BatchNorm2d = None):
        """Build the equivalent module."""
        super().__init__()
        if not is_subpixel_rewritable(transposed):
            raise ValueError(f'cannot rewrite {transposed}: only stride-2 transposed convs '
                             'with a 3x3 kernel, padding 1, output padding 1 or a 2x2 kernel '
                             'without padding (dilation 1, one group) are supported')
        weight = transposed.weight.detach()  # in x out x k x k
        in_channels, out_channels, size = weight.shape[0], weight.shape[1], weight.shape[2]
        bias = (transposed.bias.detach() if transposed.bias is not None
                else torch.zeros(out_channels))
        if batchnorm is not None:
            scale, shift = batchnorm_scale_shift(batchnorm)
            weight = weight * scale.view(1, -1, 1, 1)
            bias = bias * scale + shift
        # kernel[a, b, out, in, u, v]: phase (a, b) reads input (m + u, n + v).
        taps = 2 if size == 3 else 1
        kernel = torch.zeros(2, 2, out_channels, in_channels, taps, taps)
        for a in range(2):
            for b in range(2):
                for u in range(taps):
                    for v in range(taps):
                        ky, kx = ((_TAPS_3X3[a][u], _TAPS_3X3[b][v]) if size == 3
                                  else (a, b))
                        if ky is not None and kx is not None:
                            kernel[a, b, :, :, u, v] = weight[:, :, ky, kx].t()
        self.out_channels = out_channels
        self.pad = (0, 1, 0, 1) if size == 3 else None
        self.conv = nn.Conv2d(in_channels, 4 * out_channels, taps, bias=True)
        # Channel (a * 2 + b) * out + c holds phase (a, b) of class/channel c.
        self.conv.weight.data = kernel.reshape(4 * out_channels, in_channels, taps, taps)
        self.conv.bias.data = bias.repeat(4)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``N x in x H x W`` to ``N x out x 2H x 2W``."""
        if self.pad is not None:
            x = F.pad(x, self.pad)
        phases = self.conv(x)
        n, _, h, w = phases.shape
        c = self.out_channels
        # Interleave channels-last: (n, h, w, a, b, c) -> (n, h, a, w, b, c) -> (n, 2h, 2w, c).
        y = phases.permute(0, 2, 3, 1).reshape(n, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5)
        return y.reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


def _rewrite(parent: nn.Module) -> int:
    """Rewrite ``parent``'s children in place; return how many modules were replaced."""
    count = 0
    if isinstance(parent, ConcatDownsample) and getattr(parent, 'use_pool', False) \
            and isinstance(parent.pool_bn, nn.BatchNorm2d):
        parent.pool_bn = batchnorm_as_conv(parent.pool_bn)
        count += 1
    names = list(parent._modules)
    for index, name in enumerate(names):
        child = parent._modules[name]
        if is_subpixel_rewritable(child):
            following = parent._modules[names[index + 1]] if index + 1 < len(names) else None
            if isinstance(parent, nn.Sequential) and isinstance(following, nn.BatchNorm2d):
                # Sequential: the BN certainly takes the transposed conv's output.
                parent._modules[name] = SubPixelConvTranspose(child, following)
                parent._modules[names[index + 1]] = nn.Identity()
            else:
                parent._modules[name] = SubPixelConvTranspose(child)
            count += 1
        elif child is not None:
            count += _rewrite(child)
    return count


def int8_deployable(network: nn.Module, width: int, height: int,
                    tolerance: float = 1e-3) -> nn.Module:
    """Return an eval-mode copy of ``network`` rewritten for quantization, checked equal.

    The copy is run against the original on a random ``width`` x ``height`` image.

    Raises:
        RuntimeError: The rewritten network's logits differ from the original's by more than
            ``tolerance`` times their range (a rewrite bug; nothing is exported).
    """
    original = network.eval()
    rewritten = copy.deepcopy(original).cpu().eval()
    with torch.no_grad():
        _rewrite(rewritten)
        image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
        expected = original.cpu()(image)
        difference = float((rewritten(image) - expected).abs().max())
    scale = float(expected.abs().max()) or 1.0
    if difference > tolerance * scale:
        raise RuntimeError(f'the int8 rewrite of {type(network).__name__} changed its output '
                           f'(max |difference| {difference:.3g}, logits up to {scale:.3g})')
    return rewritten
