"""Locate files the package ships: configuration under config/ and trained weights."""

import os
from pathlib import Path

PACKAGE = 'semseg_ros'
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    """Return the package's config/ folder.

    Looked up, in order: ``$SEMSEG_ROS_CONFIG``; the source tree's ``config/`` (a checkout
    or editable install); ``<prefix>/share/semseg_ros/config`` of a colcon or pip install.
    """
    candidates = []
    if os.environ.get('SEMSEG_ROS_CONFIG'):
        candidates.append(Path(os.environ['SEMSEG_ROS_CONFIG']))
    candidates.append(_PACKAGE_DIR.parent / 'config')
    # <prefix>/lib/pythonX.Y/site-packages/semseg_ros -> <prefix>/share/semseg_ros/config
    if len(_PACKAGE_DIR.parents) > 3:
        candidates.append(_PACKAGE_DIR.parents[3] / 'share' / PACKAGE / 'config')
    for candidate in candidates:
        if (candidate / 'classes').is_dir():
            return candidate
    raise FileNotFoundError(
        'cannot find the semseg_ros config/ folder; looked in: '
        + ', '.join(str(c) for c in candidates) + '. Set SEMSEG_ROS_CONFIG to its path.')


def weights_dir() -> Path:
    """Return the folder of the weights shipped inside the package."""
    return _PACKAGE_DIR / 'weights'


def shipped_weights(model_name: str) -> Path:
    """Return the path of the shipped CamVid weights of a model (which may not exist yet)."""
    return weights_dir() / f'{model_name}_camvid.pt'


def samples_dir() -> Path:
    """Return the folder of the sample images shipped inside the package."""
    return _PACKAGE_DIR / 'data' / 'samples'


def calibration_dir() -> Path:
    """Return the folder of the CamVid train frames that calibrate INT8 graphs."""
    return samples_dir() / 'camvid_train_calib'
