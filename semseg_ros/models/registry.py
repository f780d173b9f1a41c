"""Model registry: every network registers its constructors here by name.

Adding a network is one file in ``semseg_ros/models/`` whose constructors are decorated
with :func:`register_model`, and one import line in ``semseg_ros/models/__init__.py``.
The shared model tests then cover it.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    """What the paper says about a registered network, used by tests and ``semseg bench``.

    Attributes:
        name: Registry name.
        paper: Short citation of the paper the architecture follows.
        paper_params: Parameter count the paper reports (None if it gives none).
        paper_gmacs: GMACs the paper reports, keyed by input size (width, height).
        input_multiple: Input width and height must be a multiple of this.
        output_stride: Input size divided by output size (1: full resolution).
    """

    name: str
    paper: str
    paper_params: Optional[float] = None
    paper_gmacs: Dict[Tuple[int, int], float] = field(default_factory=dict)
    input_multiple: int = 8
    output_stride: int = 1


_CONSTRUCTORS: Dict[str, Callable[..., nn.Module]] = {}
_INFO: Dict[str, ModelInfo] = {}


def register_model(paper: str, paper_params: Optional[float] = None,
                   paper_gmacs: Optional[Dict[Tuple[int, int], float]] = None,
                   input_multiple: int = 8, output_stride: int = 1):
    """Register a model constructor under its function name.

    The constructor takes ``num_classes`` and keyword arguments and returns an
    ``nn.Module`` mapping ``N x 3 x H x W`` float images to
    ``N x num_classes x H/output_stride x W/output_stride`` logits.
    """
    def decorator(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = constructor.__name__
        if name in _CONSTRUCTORS:
            raise ValueError(f'model {name!r} is registered twice')
        _CONSTRUCTORS[name] = constructor
        _INFO[name] = ModelInfo(name, paper, paper_params, dict(paper_gmacs or {}),
                                input_multiple, output_stride)
        return constructor
    return decorator


def list_models() -> List[str]:
    """Return the names of all registered models, sorted."""
    return sorted(_CONSTRUCTORS)


def _check_name(name: str) -> None:
    if name not in _CONSTRUCTORS:
        raise ValueError(f'unknown model {name!r}; valid models: {", ".join(list_models())}')


def model_info(name: str) -> ModelInfo:
    """Return the :class:`ModelInfo` of a registered model."""
    _check_name(name)
    return _INFO[name]


def create_model(name: str, num_classes: int = 11, seed: Optional[int] = None,
                 **kwargs) -> nn.Module:
    """Build a registered model.

    Args:
        name: A name from :func:`list_models`.
        num_classes: Number of output classes (void excluded).
        seed: Initialise the weights from this torch seed, leaving the process's random
            state as it was (the same untrained network in every process); None draws them
            from the process's random state.
        **kwargs: Passed to the model's constructor.

    Raises:
        ValueError: The name is unknown (the message lists the valid ones) or
            ``num_classes`` is not positive.
    """
    _check_name(name)
    if num_classes < 1:
        raise ValueError(f'num_classes must be at least 1, got {num_classes}')
    if seed is None:
        model = _CONSTRUCTORS[name](num_classes=num_classes, **kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _CONSTRUCTORS[name](num_classes=num_classes, **kwargs)
    info = _INFO[name]
    model.model_name = name
    model.num_classes = num_classes
    model.input_multiple = info.input_multiple
    model.output_stride = info.output_stride
    return model


def check_input_size(name: str, width: int, height: int) -> None:
    """Raise ValueError naming the valid multiple if a model cannot take ``width x height``."""
    check_multiple(name, width, height, model_info(name).input_multiple)


def check_multiple(name: str, width: int, height: int, multiple: int) -> None:
    """Raise ValueError unless ``width`` and ``height`` are positive multiples of ``multiple``.

    Models call this at the top of ``forward`` with Python ints (static shapes), so the check
    runs while tracing for ONNX export and leaves nothing in the exported graph.
    """
    if width <= 0 or height <= 0 or width % multiple or height % multiple:
        raise ValueError(
            f'{name} cannot take a {width}x{height} input: width and height must be positive '
            f'multiples of {multiple} (e.g. {max(multiple, width // multiple * multiple)}x'
            f'{max(multiple, height // multiple * multiple)})')
