"""Shared test fixtures: where the CamVid data lies, and an isolated ROS 2 environment."""

import os
from pathlib import Path
import time

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# A pytest-xdist worker (`make test-fast` runs two) is one of the run's test processes.
XDIST_WORKER = os.environ.get('PYTEST_XDIST_WORKER')
# Keep DDS on loopback and give this test process a domain of its own, before rclpy loads
# (a worker inherits its controller's: it takes its own).
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
if XDIST_WORKER:
    os.environ['ROS_DOMAIN_ID'] = str(20 + os.getpid() % 200)
os.environ.setdefault('ROS_DOMAIN_ID', str(20 + os.getpid() % 200))
os.environ.setdefault('ROS_LOG_DIR', str(REPO_ROOT / 'log' / 'ros'))
# One graph cache for every run of this checkout (log/test_graph_cache, which `make clean`
# removes; $SEMSEG_TEST_GRAPH_CACHE chooses another), its processes (workers too) and the
# nodes and tools they start. A graph's key holds the weights' digest, size, precision,
# runtime versions and the digest of the code that builds it, so a graph an earlier run left
# is the very graph this run would build: the untrained networks' graphs are built once per
# change of that code, not once per run. Tests of the cache itself, and tests that must see
# a build, give their own folder. At the start, files unused for PRUNE_DAYS go, and the
# least recently used ones while the cache holds more than PRUNE_MB (each change of that code
# adds a set of graphs, about 15 MB).
GRAPH_CACHE = Path(os.environ.get('SEMSEG_TEST_GRAPH_CACHE')
                   or REPO_ROOT / 'log' / 'test_graph_cache')
PRUNE_DAYS, PRUNE_MB = 14, 300
os.environ['SEMSEG_TEST_GRAPH_CACHE'] = os.environ['SEMSEG_ROS_CACHE'] = str(GRAPH_CACHE)


def pytest_configure(config):
    """Create the graph cache and prune it (the controller, or a run without workers)."""
    if XDIST_WORKER:
        return
    GRAPH_CACHE.mkdir(parents=True, exist_ok=True)
    files = []
    for path in GRAPH_CACHE.rglob('*'):
        try:
            if path.is_file():
                stat = path.stat()
                files.append((max(stat.st_atime, stat.st_mtime), stat.st_size, path))
        except OSError:  # another run's file, gone meanwhile
            pass
    stale, total = time.time() - PRUNE_DAYS * 86400, sum(size for _, size, _ in files)
    for used, size, path in sorted(files):  # least recently used first
        if used >= stale and total <= PRUNE_MB * 2**20:
            break
        path.unlink(missing_ok=True)
        total -= size


# The two tiers: `make test-fast` runs what is not marked, `make test` everything. Modules
# whose tests run nodes over real DDS, and modules that train, build, quantize or evaluate
# for minutes, are marked here, in one place; single tests elsewhere carry the marker.
DDS_MODULES = {'test_segmentation_node', 'test_keyframe_node', 'test_keyframe_pipeline',
               'test_launch_segmentation', 'test_launch_slam_keyframes', 'test_bench_node',
               'test_demo', 'test_orbslam3_node', 'test_slam_pipeline'}
SLOW_MODULES = {'test_colcon_build', 'test_training', 'test_int8', 'test_orbslam2_gate',
                'test_orbslam3'}


def pytest_collection_modifyitems(config, items):
    """Mark the tests of the DDS and slow modules (see DDS_MODULES, SLOW_MODULES)."""
    for item in items:
        module = item.module.__name__.rsplit('.', 1)[-1] if item.module else ''
        if module in DDS_MODULES:
            item.add_marker(pytest.mark.dds)
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope='session')
def samples(tmp_path_factory):
    """The shipped sample sequence (48 CamVid val frames of 0016E5) laid out like CamVid.

    A folder with ``val.txt`` (``val/<name>.jpg valannot/<name>.png`` lines, frame order) and
    the two folders linked to the package's samples: what tests that need real frames and
    labels, but measure no accuracy, read instead of the CamVid data set.
    """
    from semseg_ros.core.resources import samples_dir
    sequence = samples_dir() / 'camvid_0016E5'
    root = tmp_path_factory.mktemp('samples')
    (root / 'val').symlink_to(sequence / 'images', target_is_directory=True)
    (root / 'valannot').symlink_to(sequence / 'labels', target_is_directory=True)
    lines = [f'val/{image.name} valannot/{image.stem}.png'
             for image in sorted((sequence / 'images').glob('*.jpg'))]
    (root / 'val.txt').write_text('\n'.join(lines) + '\n')
    return root


@pytest.fixture(scope='session')
def seeded_network():
    """Factory of seeded, untrained networks (eval mode) whose BN statistics are not trivial.

    ``build(model, num_classes=11, random_scales=False)``; ``random_scales`` also draws the BN
    scales, negative ones included.
    """
    def build(model, num_classes=11, random_scales=False):
        import torch
        from semseg_ros.models import create_model
        torch.manual_seed(0)
        network = create_model(model, num_classes=num_classes)
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                if random_scales:
                    module.weight.data.uniform_(-1.5, 1.5)
        return network.eval()
    return build
