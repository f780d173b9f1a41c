"""Shared test fixtures: where the CamVid data lies, and an isolated ROS 2 environment."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Keep DDS on loopback and give this test process a domain of its own, before rclpy loads.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', str(20 + os.getpid() % 200))
os.environ.setdefault('ROS_LOG_DIR', str(REPO_ROOT / 'log' / 'ros'))


def camvid_root() -> Path:
    """Return the CamVid folder: $SEMSEG_CAMVID_ROOT, else <repo>/../shared/datasets/camvid."""
    return Path(os.environ.get('SEMSEG_CAMVID_ROOT',
                               REPO_ROOT.parent / 'shared' / 'datasets' / 'camvid'))


@pytest.fixture(scope='session')
def camvid():
    """Path of the CamVid data set; skips the test when it is not on this machine."""
    root = camvid_root()
    if not (root / 'train.txt').is_file():
        pytest.skip(f'CamVid data not found at {root} (set SEMSEG_CAMVID_ROOT)')
    return root
