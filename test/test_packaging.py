"""What a ROS user's tools read: package.xml for rosdep, the LICENSE, setup.py for colcon.

rosdep installs what package.xml declares; a module imported but not declared is missing on
a robot set up with ``rosdep install``, a key declared but never used installs for nothing.
"""

import ast
from pathlib import Path
import re
import sys
import xml.etree.ElementTree as ElementTree

import yaml

REPO = Path(__file__).resolve().parents[1]
# The rosdep key of each third-party module imported anywhere in the repository.
ROSDEP_KEYS = {
    'cv2': 'python3-opencv', 'numpy': 'python3-numpy', 'yaml': 'python3-yaml',
    'tqdm': 'python3-tqdm', 'matplotlib': 'python3-matplotlib', 'imageio': 'python3-imageio',
    'torch': 'python3-torch', 'onnxruntime': 'python3-onnxruntime-pip',
    'rosbags': 'python3-rosbags-pip', 'onnx': 'python3-onnx-pip',
    'onnxscript': 'python3-onnxscript-pip', 'pytest': 'python3-pytest',
    **{name: name for name in ('rclpy', 'rcl_interfaces', 'sensor_msgs', 'std_msgs',
                               'diagnostic_msgs', 'geometry_msgs', 'nav_msgs',
                               'vision_msgs', 'builtin_interfaces', 'launch',
                               'launch_ros', 'launch_testing')},
}
# What test/test_lint.py runs (the flake8 plugins are loaded, not imported).
LINTERS = {'python3-flake8', 'python3-flake8-builtins', 'python3-flake8-comprehensions',
           'python3-flake8-import-order', 'python3-flake8-quotes', 'pydocstyle'}
# rosdistro's keys as of 2026 do not include these; rosdep/semseg_ros.yaml defines them.
OWN_KEYS = {'python3-onnx-pip', 'python3-onnxscript-pip'}
# Optional runtimes, module -> PyPI name: only what works without them imports them (a backend
# chosen by name, refused with a message when the runtime is missing; a benchmark script).
# requirements.txt installs them into the venv, so the tests cover them; package.xml leaves
# them out, so that rosdep does not put them on every robot (a Jetson has no use for them).
OPTIONAL = {'openvino': 'openvino', 'pyorbslam3': 'pyorbslam3'}
# Optional runtimes under another licence come as a setup.py extra (pip install '.[NAME]'),
# which the Makefile installs into the venv: PyPI name -> extra.
EXTRAS = {'pyorbslam3': 'slam'}


def imported_modules(*folders):
    """Return the top-level third-party modules imported by the Python files in ``folders``."""
    # The package, the test helpers, the tools' scripts (a test imports one) and the
    # benchmark scripts' own shared module.
    local = {path.stem for folder in ('test', 'tools') for path in (REPO / folder).glob('*.py')} \
        | {'semseg_ros', 'benchmarks'}
    modules = set()
    for folder in folders:
        for path in (REPO / folder).rglob('*.py'):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                else:
                    continue
                modules.update(name.split('.')[0] for name in names)
    return {name for name in modules if name not in sys.stdlib_module_names | local}


def declared(kind: str):
    """Return the keys of package.xml's ``<kind>`` elements."""
    root = ElementTree.parse(REPO / 'package.xml').getroot()
    return {element.text for element in root.iter(kind)}


def keys_of(modules):
    """Map modules to rosdep keys; fail naming any module without one."""
    unknown = sorted(modules - set(ROSDEP_KEYS))
    assert not unknown, f'imported, no rosdep key known: {unknown} (add it here and to ' \
                        'package.xml)'
    return {ROSDEP_KEYS[name] for name in modules}


def test_package_xml_declares_every_import_and_nothing_else():
    """exec_depend: what the package and launch files import; test_depend: tests, linters."""
    run = keys_of(imported_modules('semseg_ros', 'launch') - set(OPTIONAL))
    assert declared('exec_depend') == run
    tests = keys_of(imported_modules('test', 'benchmarks') - set(OPTIONAL)) - run
    assert declared('test_depend') == tests | LINTERS


def requirement_names(path: Path):
    """Return the package names a pip requirements file lists."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            names.add(re.split(r'[\s\[;=<>!~]', line, maxsplit=1)[0].lower())
    return names


def test_optional_runtimes_install_into_the_venv_only():
    """An optional runtime is in requirements.txt (the tests run it), not in package.xml, and
    is imported somewhere (else it would install for nothing)."""
    in_requirements = requirement_names(REPO / 'requirements.txt')
    assert set(OPTIONAL.values()) - set(EXTRAS) <= in_requirements
    extras = _setup_extras()
    makefile = (REPO / 'Makefile').read_text()
    for name, extra in EXTRAS.items():
        assert name not in in_requirements, f'{name} is declared twice'
        assert any(r.split('=')[0].split('<')[0] == name for r in extras.get(extra, [])), \
            f"setup.py's {extra} extra does not install {name}"
        assert f"-e '.[{extra}]'" in makefile, f'the Makefile does not install .[{extra}]'
    declared_keys = declared('exec_depend') | declared('test_depend')
    assert not {key for key in declared_keys if any(name in key for name in OPTIONAL)}
    imported = imported_modules('semseg_ros', 'launch', 'test', 'benchmarks')
    assert set(OPTIONAL) <= imported


def test_keys_rosdistro_lacks_are_defined_and_the_readme_names_the_pip_ones():
    """rosdep/semseg_ros.yaml installs the package's own keys from pip; the README says which
    keys come from pip."""
    own = yaml.safe_load((REPO / 'rosdep' / 'semseg_ros.yaml').read_text())
    assert set(own) == OWN_KEYS
    for key, rule in own.items():
        assert rule['*']['pip']['packages'] == [key.removeprefix('python3-').removesuffix('-pip')]
    readme = (REPO / 'README.md').read_text()
    for key in sorted(k for k in declared('exec_depend') if k.endswith('-pip')):
        assert key in readme, f'the README does not say that {key} comes from pip'


def test_license_is_the_one_package_xml_and_setup_py_name():
    """LICENSE holds the Apache License 2.0 text; package.xml and setup.py say Apache-2.0."""
    text = (REPO / 'LICENSE').read_text()
    assert 'Apache License' in text and 'Version 2.0, January 2004' in text
    assert 'TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION' in text
    assert declared('license') == {'Apache-2.0'}
    assert "license='Apache-2.0'" in (REPO / 'setup.py').read_text()


def _setup_extras():
    """Return setup.py's extras_require (read from its source, not run)."""
    tree = ast.parse((REPO / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == 'extras_require':
            return ast.literal_eval(node.value)
    return {}
