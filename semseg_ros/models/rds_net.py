"""RDS-Net: residual depthwise-separable blocks with channel shuffle.

RDS-Net (Doan et al., real-time semantic segmentation with Residual Depthwise-Separable
blocks and channel shuffle), built from its layer table (Table I):

=====  ==========================================  =========  ========
stage  layers                                      channels   stride
=====  ==========================================  =========  ========
1      downsample                                  32         2
2      downsample                                  64         4
3      3 x RDS block, dropout 0.5                  64         4
4      downsample                                  128        8
5      5 x RDS block, dilation 1, 2, 4, 8, 16,     128        8
       dropout 0.3
6      3x3 conv to the classes, bilinear upsampling           1
=====  ==========================================  =========  ========

RDS block: depthwise 3x3 + BN, 3x3 conv + BN, channel shuffle (4 groups), residual add.

Choices where the description leaves room:

* Downsample block: the ENet/ERFNet downsampler shared with MiniNet (a 3x3 stride-2 conv
  giving ``out - in`` channels concatenated with a 2x2 max-pool, BN, ReLU).
* The block's dilation applies to the depthwise conv; the 3x3 conv is GROUPED (4 groups) and
  undilated. Grouping is what makes the channel shuffle useful (as in ShuffleNet): the shuffle
  lets the next block's groups see every group's output.
* One ReLU, after the residual add (as in ShuffleNet's unit, no activation between the
  depthwise conv and the grouped conv).
* Spatial dropout (``Dropout2d``) on the residual branch, before the add.
* The 3x3 classifier has a bias; the upsampling is bilinear with ``align_corners=False``.

Complexity: 0.292M parameters and 3.41 GMACs at 1024x512 with 19 classes; 0.283M and
1.10 GMACs at 480x360 with 11. No paper parameter or GMAC figures are registered, so the
complexity tests check this network against its own layer table only.
"""

from torch import nn, Tensor
import torch.nn.functional as F

from semseg_ros.models.layers import (channel_shuffle, ConcatDownsample, ConvBN,
                                      SegmentationNet)
from semseg_ros.models.registry import register_model

SHUFFLE_GROUPS = 4


class RDSBlock(nn.Module):
    """Residual depthwise-separable block with channel shuffle.

    Args:
        channels: Input and output channels (a multiple of :data:`SHUFFLE_GROUPS`).
        dilation: Dilation of the depthwise conv.
        dropout: Spatial dropout before the residual add.
    """

    def __init__(self, channels: int, dilation: int = 1, dropout: float = 0.0):
        """Build the block."""
        super().__init__()
        self.depthwise = ConvBN(channels, channels, 3, dilation=dilation, groups=channels)
        self.grouped = ConvBN(channels, channels, 3, groups=SHUFFLE_GROUPS)
        self.dropout = nn.Dropout2d(dropout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block (same shape in and out)."""
        y = channel_shuffle(self.grouped(self.depthwise(x)), SHUFFLE_GROUPS)
        return self.relu(x + self.dropout(y))


class RDSNet(SegmentationNet):
    """RDS-Net: ``N x 3 x H x W`` images to ``N x classes x H x W`` logits.

    Args:
        num_classes: Output channels.
        name: Model name used in error messages.
    """

    def __init__(self, num_classes: int, name: str = 'rds_net'):
        """Build the network."""
        super().__init__(name)
        self.down1 = ConcatDownsample(3, 32)
        self.down2 = ConcatDownsample(32, 64)
        self.stage1 = nn.Sequential(*[RDSBlock(64, dropout=0.5) for _ in range(3)])
        self.down3 = ConcatDownsample(64, 128)
        self.stage2 = nn.Sequential(*[RDSBlock(128, dilation, dropout=0.3)
                                      for dilation in (1, 2, 4, 8, 16)])
        self.classifier = nn.Conv2d(128, num_classes, 3, padding=1)

    def forward(self, image: Tensor) -> Tensor:
        """Return the class logits at the input resolution."""
        self.check(image)
        x = self.stage1(self.down2(self.down1(image)))
        x = self.classifier(self.stage2(self.down3(x)))
        return F.interpolate(x, size=image.shape[-2:], mode='bilinear', align_corners=False)


@register_model(paper='Doan et al., RDS-Net (layer table, Table I)',
                paper_params=None, input_multiple=8, output_stride=1)
def rds_net(num_classes: int = 11, **kwargs) -> RDSNet:
    """Build RDS-Net."""
    return RDSNet(num_classes, name='rds_net', **kwargs)
