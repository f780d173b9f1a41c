"""Model complexity: parameter count and multiply-accumulates (MACs) of one forward pass.

MACs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per
multiply-accumulate of convolutions (grouped and depthwise ones by their true per-group
cost), transposed convolutions and matrix products, and nothing for elementwise ops, pooling,
batch norm or activations: the convention papers use when they quote (G)MACs.
"""

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Return the number of parameters of ``model`` (trainable or not, buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_gmacs(model: nn.Module, width: int, height: int) -> float:
    """Return the GMACs (1e9 multiply-accumulates) of one eval-mode pass on a 1x3xHxW image.

    Args:
        model: The network; it is put in eval mode for the count and put back afterwards.
        width: Input width in pixels.
        height: Input height in pixels.
    """
    was_training = model.training
    model.eval()
    try:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device('cpu')
        image = torch.zeros(1, 3, height, width, device=device)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(image)
        return counter.get_total_flops() / 2 / 1e9
    finally:
        model.train(was_training)
