"""``colcon build`` treats the package as ament_python and installs what a robot needs."""

import os
from pathlib import Path
import re
import shutil
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _tracked_files():
    """Return the repository's tracked files (what a clone holds)."""
    out = subprocess.run(['git', 'ls-files', '-z'], cwd=REPO, capture_output=True, check=True)
    return [name for name in out.stdout.decode().split('\0') if name]


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A colcon workspace holding a copy of the repository, built once."""
    colcon = shutil.which('colcon', path=str(VENV_BIN)) or shutil.which('colcon')
    if colcon is None:
        pytest.skip('colcon is not installed (pip install colcon-common-extensions)')
    root = tmp_path_factory.mktemp('ws')
    source = root / 'src' / 'semseg_ros'
    for name in _tracked_files():
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV_BIN.parent),
               PATH=f'{VENV_BIN}{os.pathsep}{os.environ.get("PATH", "")}')
    listed = subprocess.run([colcon, 'list'], cwd=root, env=env, capture_output=True,
                            text=True, timeout=120)
    assert 'semseg_ros' in listed.stdout and '(ros.ament_python)' in listed.stdout, \
        f'colcon does not see an ament_python package:\n{listed.stdout}{listed.stderr}'
    built = subprocess.run([colcon, 'build', '--base-paths', 'src'], cwd=root, env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, f'colcon build failed:\n{built.stdout}{built.stderr}'
    return root / 'install' / 'semseg_ros'


def _colcon(workspace, *args, timeout=600):
    """Run colcon in the workspace of ``workspace`` (its install/semseg_ros folder)."""
    colcon = shutil.which('colcon', path=str(VENV_BIN)) or shutil.which('colcon')
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV_BIN.parent),
               PATH=f'{VENV_BIN}{os.pathsep}{os.environ.get("PATH", "")}')
    env.pop('PYTHONPATH', None)  # the tests must import the installed package
    return subprocess.run([colcon, *args], cwd=workspace.parents[1], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_executables_launch_and_config_are_installed(workspace):
    """Executables go to lib/semseg_ros, launch/ and config/ to share/semseg_ros."""
    for executable in ('segmentation_node', 'keyframe_node', 'orbslam3_node', 'semseg'):
        assert (workspace / 'lib' / 'semseg_ros' / executable).is_file(), executable
    share = workspace / 'share' / 'semseg_ros'
    assert (share / 'package.xml').is_file() and (share / 'LICENSE').is_file()
    assert sorted(p.name for p in (share / 'launch').glob('*.launch.py'))
    assert (share / 'config' / 'classes' / 'camvid.yaml').is_file()
    assert (share / 'config' / 'cpu_robot.yaml').is_file()
    index = workspace / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'semseg_ros'
    assert index.is_file()


def test_installed_package_finds_its_share_files(workspace):
    """The installed package reads class sets from share/ and carries its sample data."""
    site = next(workspace.glob('lib/python3*/site-packages'))
    code = ('from semseg_ros.core.resources import config_dir\n'
            'from semseg_ros.core.classes import load_class_set\n'
            'import semseg_ros, pathlib\n'
            'print(config_dir())\n'
            'print(load_class_set("camvid").names[8])\n'
            'print(len(list((pathlib.Path(semseg_ros.__file__).parent / "data" / "samples")'
            '.rglob("*.jpg"))))\n'
            'from semseg_ros.core.resources import weights_dir\n'
            'print(",".join(sorted(p.name for p in weights_dir().iterdir())))\n')
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop('SEMSEG_ROS_CONFIG', None)
    result = subprocess.run([sys.executable, '-c', code], cwd=workspace, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    config, car, samples, weights = result.stdout.split()
    assert Path(config) == workspace / 'share' / 'semseg_ros' / 'config'
    assert car == 'Car' and int(samples) >= 30
    # Shipped weights and the card; graphs are derived on first use, never installed.
    shipped = [Path(name).name for name in _tracked_files()
               if name.startswith('semseg_ros/weights/')]
    assert shipped and weights.split(',') == sorted(shipped)


def test_colcon_test_runs_the_suite(workspace):
    """``colcon test`` finds pytest (extras_require) and runs tests: a quick subset here."""
    tested = _colcon(workspace, 'test', '--packages-select', 'semseg_ros',
                     '--pytest-args', '-k', 'test_packaging or test_weights_errors')
    assert tested.returncode == 0, f'{tested.stdout}{tested.stderr}'
    result = _colcon(workspace, 'test-result', '--all', '--verbose')
    summary = [line for line in result.stdout.splitlines() if line.startswith('Summary:')]
    assert summary, result.stdout
    tests, errors, failures = (int(word) for word in re.findall(
        r'(\d+) tests?, (\d+) errors?, (\d+) failures?', summary[0])[0])
    assert tests > 0 and errors == 0 and failures == 0, result.stdout
