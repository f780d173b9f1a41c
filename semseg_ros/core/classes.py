"""Class sets (names, palette, ignore id) as data, and colourising label maps."""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple, Union

import numpy as np
import yaml

from semseg_ros.core.resources import config_dir

# vision_msgs/LabelInfo's convention: the largest id of the mask's type (255 in a mono8 mask)
# is "unlabelled". The segmentation node writes it where no class is confident enough.
UNLABELED_ID = 255


@dataclass(frozen=True)
class ClassSet:
    """A labelled class set.

    Attributes:
        name: Short name (``camvid``, ``cityscapes``...).
        names: Class names, index = class id.
        colors: ``num_classes x 3`` uint8 RGB palette.
        ignore_index: Label id that marks void pixels (ignored in loss and metrics).
        ignore_color: RGB colour drawn for void or out-of-range ids.
    """

    name: str
    names: Tuple[str, ...]
    colors: np.ndarray
    ignore_index: int
    ignore_color: Tuple[int, int, int] = (0, 0, 0)

    @property
    def num_classes(self) -> int:
        """Number of real classes (void excluded)."""
        return len(self.names)

    def lookup_table(self) -> np.ndarray:
        """Return a 256 x 3 uint8 table mapping any uint8 id to its RGB colour."""
        table = np.empty((256, 3), np.uint8)
        table[:] = self.ignore_color
        table[:self.num_classes] = self.colors
        return table

    def to_dict(self) -> dict:
        """Return a plain, YAML/JSON-serialisable description of the class set."""
        return {
            'name': self.name,
            'ignore_index': int(self.ignore_index),
            'ignore_color': [int(c) for c in self.ignore_color],
            'classes': [{'id': i, 'name': n, 'color': [int(c) for c in col]}
                        for i, (n, col) in enumerate(zip(self.names, self.colors))],
        }


def available_class_sets() -> List[str]:
    """Return the names of the class sets shipped under config/classes/."""
    return sorted(p.stem for p in (config_dir() / 'classes').glob('*.yaml'))


def load_class_set(name_or_path: Union[str, Path]) -> ClassSet:
    """Load a class set by shipped name (``camvid``) or from a YAML file path.

    Raises:
        ValueError: Unknown name (listing the shipped ones) or a malformed file (naming it).
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = config_dir() / 'classes' / f'{name_or_path}.yaml'
        if not path.is_file():
            raise ValueError(f'unknown class set {str(name_or_path)!r}; shipped class sets: '
                             f'{", ".join(available_class_sets())}, or give a YAML file path')
    try:
        spec = yaml.safe_load(path.read_text())
        names = tuple(str(c['name']) for c in spec['classes'])
        colors = np.array([c['color'] for c in spec['classes']], dtype=np.int64)
        ignore_index = int(spec.get('ignore_index', 255))
        ignore_color = tuple(int(c) for c in spec.get('ignore_color', (0, 0, 0)))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f'{path}: not a valid class-set file ({error}); expected keys '
                         "'classes' (a list of {name, color: [r, g, b]}) and 'ignore_index'"
                         ) from error
    if not names or colors.shape != (len(names), 3) or colors.min() < 0 or colors.max() > 255:
        raise ValueError(f'{path}: every class needs a name and an RGB colour in 0..255')
    if len(names) > 255:
        raise ValueError(f'{path}: at most 255 classes fit a mono8 label mask')
    if 0 <= ignore_index < len(names):
        raise ValueError(f'{path}: ignore_index {ignore_index} collides with a class id')
    return ClassSet(str(spec.get('name', path.stem)), names, colors.astype(np.uint8),
                    ignore_index, ignore_color)


def mark_unlabeled(labels: np.ndarray, confidence: np.ndarray, threshold: float) -> np.ndarray:
    """Return ``labels`` with :data:`UNLABELED_ID` where the confidence is under ``threshold``.

    Args:
        labels: ``H x W`` uint8 class ids (not modified).
        confidence: ``H x W`` uint8, 255 x the top class probability.
        threshold: Top probability (0..1) a pixel needs to keep its class; 0 keeps every one.

    Raises:
        ValueError: The shapes differ or the threshold is outside [0, 1].
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f'threshold must be in [0, 1], got {threshold}')
    if labels.shape != confidence.shape:
        raise ValueError(f'labels {labels.shape} and confidence {confidence.shape} differ in '
                         'size')
    if threshold <= 0.0:
        return labels
    return np.where(confidence < threshold * 255.0, np.uint8(UNLABELED_ID), labels)


def colorize(labels: np.ndarray, class_set: ClassSet, out: np.ndarray = None) -> np.ndarray:
    """Map an ``H x W`` uint8 class-id map to ``H x W x 3`` RGB colours by table lookup."""
    table = class_set.lookup_table()
    return np.take(table, labels, axis=0, out=out)


def overlay(image: np.ndarray, colors: np.ndarray, alpha: float) -> np.ndarray:
    """Blend an RGB image with a colour mask of the same size: ``(1-alpha)*image + alpha*colors``.

    Raises:
        ValueError: alpha outside [0, 1] or the shapes differ.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'overlay alpha must be in [0, 1], got {alpha}')
    if image.shape != colors.shape:
        raise ValueError(f'image {image.shape} and colour mask {colors.shape} differ in size')
    import cv2  # local: keeps cv2 off the import path of code that never overlays
    return cv2.addWeighted(image, 1.0 - alpha, colors, alpha, 0.0)
