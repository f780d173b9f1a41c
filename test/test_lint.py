"""Style rules as tests: ament's flake8 rules (99 columns) and pep257 docstrings."""

from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for p in ('semseg_ros', 'test', 'launch', 'benchmarks', 'tools', 'setup.py')
           if (ROOT / p).exists()]


@pytest.mark.linter
def test_flake8():
    """The package, tests and launch files pass flake8 with ament's configuration."""
    result = subprocess.run([sys.executable, '-m', 'flake8', *SOURCES], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, f'flake8 found problems:\n{result.stdout}{result.stderr}'


@pytest.mark.linter
def test_pep257():
    """Every public module, class and function in the package has a Google-style docstring."""
    result = subprocess.run([sys.executable, '-m', 'pydocstyle', 'semseg_ros'], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, f'pydocstyle found problems:\n{result.stdout}{result.stderr}'
