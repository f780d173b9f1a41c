"""Camera intrinsics, from a ``sensor_msgs/CameraInfo``-like YAML or values, as ORB-SLAM3 settings.

ORB-SLAM3 reads its camera and ORB extractor from an OpenCV YAML file (``File.version
"1.0"``: ``Camera1.fx`` ..., ``Camera.width`` ..., ``ORBextractor.*``, and the ``Viewer.*``
keys, which it requires even without a viewer). :class:`Intrinsics` holds a pinhole camera
with plumb-bob distortion and writes that file; it is read from the YAML that ROS camera
calibration writes (``image_width``, ``image_height``, ``camera_matrix.data``,
``distortion_coefficients.data``), from a CameraInfo message's fields (``width``, ``height``,
``k``, ``d``), or given as fx/fy/cx/cy.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Tuple, Union

import yaml

from semseg_ros.core.files import write_text_atomic

PathLike = Union[str, Path]

DEFAULT_ORB_FEATURES = 1000


class SettingsError(ValueError):
    """Camera intrinsics that are missing or invalid (message names the file and key)."""


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: image size, focal lengths, principal point, plumb-bob distortion."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: Tuple[float, ...] = field(default=(0.0, 0.0, 0.0, 0.0))

    def __post_init__(self):
        """Check the values; raise SettingsError naming the bad one."""
        if self.width < 1 or self.height < 1:
            raise SettingsError(f'image size must be positive, got {self.width}x{self.height}')
        if not (self.fx > 0 and self.fy > 0):
            raise SettingsError(f'focal lengths must be positive, got fx={self.fx} fy={self.fy}')
        if not (0 <= self.cx <= self.width and 0 <= self.cy <= self.height):
            raise SettingsError(f'principal point ({self.cx}, {self.cy}) lies outside the '
                                f'{self.width}x{self.height} image')
        if len(self.distortion) not in (0, 4, 5, 8):
            raise SettingsError('distortion must have 4 or 5 plumb-bob coefficients '
                                f'(k1 k2 p1 p2 [k3]), got {len(self.distortion)}')

    @classmethod
    def from_camera_info(cls, width: int, height: int, k: Sequence[float],
                         d: Sequence[float] = ()) -> 'Intrinsics':
        """Build from CameraInfo fields: ``k`` the row-major 3x3 matrix, ``d`` plumb-bob."""
        k = [float(v) for v in k]
        if len(k) != 9:
            raise SettingsError(f'the camera matrix needs 9 values, got {len(k)}')
        d = tuple(float(v) for v in d)[:5]
        if d and not any(d):
            d = ()
        return cls(int(width), int(height), k[0], k[4], k[2], k[5], d or (0.0,) * 4)

    @classmethod
    def from_yaml(cls, path: PathLike) -> 'Intrinsics':
        """Read a ROS camera-calibration YAML (what ``camera_info_url`` points at).

        Raises:
            SettingsError: The file is unreadable or a key is missing or wrong (named).
        """
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise SettingsError(f'{path}: cannot read camera info: {error}') from error
        if not isinstance(data, Mapping):
            raise SettingsError(f'{path}: a camera info YAML must be a mapping')
        try:
            return cls.from_camera_info(data['image_width'], data['image_height'],
                                        _matrix(data, 'camera_matrix'),
                                        _matrix(data, 'distortion_coefficients', ()))
        except KeyError as error:
            raise SettingsError(f'{path}: missing key {error}') from error
        except (TypeError, ValueError) as error:
            raise SettingsError(f'{path}: {error}') from error

    def camera_info_fields(self) -> dict:
        """Return the CameraInfo fields (width, height, k, d, p) of this camera."""
        fx, fy, cx, cy = self.fx, self.fy, self.cx, self.cy
        return {'width': self.width, 'height': self.height,
                'k': [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
                'd': list(self.distortion),
                'p': [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]}

    def settings_text(self, fps: float, features: int = DEFAULT_ORB_FEATURES,
                      rgb: bool = True) -> str:
        """Return ORB-SLAM3's settings file for this camera at ``fps`` frames per second."""
        k1, k2, p1, p2, *rest = tuple(self.distortion) + (0.0,) * 4
        lines = ['%YAML:1.0', '---', '# Written by semseg_ros (semseg_ros/slam/settings.py).',
                 'File.version: "1.0"', 'Camera.type: "PinHole"',
                 f'Camera1.fx: {self.fx:.6f}', f'Camera1.fy: {self.fy:.6f}',
                 f'Camera1.cx: {self.cx:.6f}', f'Camera1.cy: {self.cy:.6f}',
                 f'Camera1.k1: {k1:.9f}', f'Camera1.k2: {k2:.9f}',
                 f'Camera1.p1: {p1:.9f}', f'Camera1.p2: {p2:.9f}']
        if rest and rest[0]:
            lines.append(f'Camera1.k3: {rest[0]:.9f}')
        lines += [f'Camera.width: {self.width}', f'Camera.height: {self.height}',
                  f'Camera.fps: {max(1, round(fps))}', f'Camera.RGB: {int(rgb)}',
                  f'ORBextractor.nFeatures: {int(features)}', 'ORBextractor.scaleFactor: 1.2',
                  'ORBextractor.nLevels: 8', 'ORBextractor.iniThFAST: 20',
                  'ORBextractor.minThFAST: 7',
                  'Viewer.KeyFrameSize: 0.05', 'Viewer.KeyFrameLineWidth: 1.0',
                  'Viewer.GraphLineWidth: 0.9', 'Viewer.PointSize: 2.0',
                  'Viewer.CameraSize: 0.08', 'Viewer.CameraLineWidth: 3.0',
                  'Viewer.ViewpointX: 0.0', 'Viewer.ViewpointY: -0.7',
                  'Viewer.ViewpointZ: -1.8', 'Viewer.ViewpointF: 500.0']
        return '\n'.join(lines) + '\n'

    def write_settings(self, path: PathLike, fps: float,
                       features: int = DEFAULT_ORB_FEATURES, rgb: bool = True) -> Path:
        """Write :meth:`settings_text` atomically to ``path``; return it."""
        return write_text_atomic(path, self.settings_text(fps, features, rgb))


def _matrix(data: Mapping[str, Any], key: str, default: Any = None) -> Sequence[float]:
    """Return ``data[key]['data']`` (a calibration YAML matrix), or ``default`` if absent."""
    if key not in data and default is not None:
        return default
    value = data[key]
    if not isinstance(value, Mapping) or not isinstance(value.get('data'), list):
        raise ValueError(f'{key} must be a mapping with a data list')
    return value['data']
