"""Derived graphs are built into a cache folder, never into the installed package.

The package is copied as an install would lay it out (without any .onnx file: graphs are
built on first use), once writable and once read-only; a Segmenter of the shipped weights
then runs from the copy in a fresh process.
"""

import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
import numpy as np
from semseg_ros.core.segmenter import Segmenter, SegmenterConfig
segmenter = Segmenter(SegmenterConfig(input_width=64, input_height=64, threads=1))
assert segmenter.segment(np.zeros((48, 64, 3), np.uint8)).labels.shape == (48, 64)
print(segmenter.describe()['weights_file'])
"""


def install_copy(root: Path) -> Path:
    """Copy the package (code, shipped weights, samples; no graphs) under ``root``."""
    shutil.copytree(REPO / 'semseg_ros', root / 'semseg_ros',
                    ignore=shutil.ignore_patterns('*.onnx', '__pycache__'))
    shutil.copytree(REPO / 'config', root / 'config')
    return root


def listing(root: Path):
    """Every file below ``root`` with its size and modification time."""
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in root.rglob('*'))


def run_from(root: Path, cache: Path, read_only: bool = False) -> subprocess.CompletedProcess:
    """Run SCRIPT with ``root`` as the package's location, ``cache`` as $ROS_HOME.

    ``read_only``: ``root`` is mounted read-only for the process (root ignores file modes, so
    it runs in a mount namespace of its own with a read-only bind mount there).
    """
    env = {key: value for key, value in os.environ.items()
           if key not in ('SEMSEG_ROS_CACHE', 'XDG_CACHE_HOME')}
    env.update(PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE='1', ROS_HOME=str(cache))
    command = [sys.executable, '-c', SCRIPT]
    if read_only:
        command = ['unshare', '--mount', 'sh', '-c',
                   'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && '
                   'touch "$0/probe" 2>/dev/null && exit 99; exec "$1" -c "$2"',
                   str(root), sys.executable, SCRIPT]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                          cwd=cache)


def test_first_start_builds_into_ros_home_not_the_package(tmp_path):
    """A writable install stays as it was; the graph lies under $ROS_HOME/semseg_ros/graphs;
    nothing is written to stderr."""
    root = install_copy(tmp_path / 'install')
    before = listing(root)
    cache = tmp_path / 'ros_home'
    cache.mkdir()
    result = run_from(root, cache)
    assert result.returncode == 0, result.stderr
    # The exporter's notes go to the debug log, not to the operator's console.
    assert result.stderr == '', result.stderr
    assert result.stdout.strip() == str(root / 'semseg_ros' / 'weights' /
                                        'mininet_v2_cpu_camvid.pt')
    assert listing(root) == before, 'the first start wrote into the package'
    graphs = list((cache / 'semseg_ros' / 'graphs').glob('mininet_v2_cpu_camvid.64x64.*.onnx'))
    assert len(graphs) == 1, sorted(p.name for p in cache.rglob('*'))
    assert not [p for p in graphs[0].parent.iterdir() if p.suffix == '.part']


def test_a_read_only_install_works(tmp_path):
    """The whole install mounted read-only: the node's core starts and segments."""
    if os.geteuid() != 0 or not shutil.which('unshare'):
        pytest.skip('a read-only bind mount needs root and unshare (util-linux)')
    root = install_copy(tmp_path / 'install')
    cache = tmp_path / 'ros_home'
    cache.mkdir()
    probe = subprocess.run(['unshare', '--mount', 'true'], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f'no mount namespace here: {probe.stderr.decode().strip()}')
    result = run_from(root, cache, read_only=True)
    assert result.returncode != 99, 'the bind mount is not read-only'
    assert result.returncode == 0, result.stderr
    assert len(list((cache / 'semseg_ros' / 'graphs').glob('*.onnx'))) == 1
