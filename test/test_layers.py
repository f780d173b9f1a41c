"""The package's layers: the core never imports rclpy, and imports point down only."""

import ast
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'semseg_ros'

# Each layer may import only itself and the layers listed for it. The inference core is one
# layer in three packages: core/ (inference and backends) builds its graphs with export/
# (export and quantization), which runs core's graph modules; messages/ (ROS message
# conversion) stands alone.
_INFERENCE = {'models', 'core', 'export', 'messages'}
ALLOWED = {
    'models': {'models'},
    'core': {'models', 'core', 'export'},
    'export': {'models', 'core', 'export'},
    'messages': {'messages'},
    'keyframes': _INFERENCE | {'keyframes'},
    'data': _INFERENCE | {'data'},
    'training': _INFERENCE | {'data', 'training'},
    'bags': _INFERENCE | {'data', 'keyframes', 'bags'},
    # ORB-SLAM3 in the loop (optional): beside bags/, below nodes/ and commands/.
    'slam': _INFERENCE | {'keyframes', 'data', 'slam'},
    'nodes': _INFERENCE | {'keyframes', 'data', 'bags', 'slam', 'nodes'},
    'live': _INFERENCE | {'keyframes', 'data', 'bags', 'slam', 'nodes', 'live'},
    'commands': _INFERENCE | {'keyframes', 'data', 'training', 'bags', 'slam', 'nodes', 'live',
                              'commands'},
}
PURE_LAYERS = ['models', 'core', 'export', 'messages', 'keyframes', 'data', 'training', 'bags',
               'slam']
# The modules that import an optional dependency (ORB-SLAM3's pyorbslam3, GPL-3.0): nothing
# else imports them, and the rest of the package imports without the dependency.
OPTIONAL_MODULES = {'pyorbslam3': {'semseg_ros.slam.orbslam3', 'semseg_ros.nodes.orbslam3_node'}}


def _package_imports(path):
    """Yield the semseg_ros sub-package each import in a file points at."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split('.')
            if parts[0] == 'semseg_ros' and len(parts) > 1:
                yield parts[1]


def test_imports_point_down():
    """No module imports a layer above its own."""
    violations = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / layer).rglob('*.py')):
            for target in _package_imports(path):
                if target in ALLOWED and target not in allowed:
                    violations.append(f'{path.relative_to(ROOT)} imports semseg_ros.{target}')
    assert not violations, 'imports against the layering:\n' + '\n'.join(violations)


def test_every_package_has_a_layer():
    """Each sub-package of semseg_ros is a layer above; only cli.py sits at the top."""
    packages = {p.name for p in PACKAGE.iterdir() if (p / '__init__.py').is_file()}
    assert packages == set(ALLOWED), f'packages without a layer: {packages - set(ALLOWED)}'
    modules = sorted(p.name for p in PACKAGE.glob('*.py'))
    assert modules == ['__init__.py', 'cli.py'], modules


def test_only_the_dispatcher_imports_commands():
    """The library never imports a command module: commands sit on top of everything."""
    for path in sorted(PACKAGE.rglob('*.py')):
        if path.parent.name == 'commands' or path.name == 'cli.py':
            continue
        assert 'commands' not in set(_package_imports(path)), \
            f'{path.relative_to(ROOT)} imports semseg_ros.commands'


def _module_names(layers):
    """Return the dotted names of the modules of ``layers``, but the optional ones."""
    optional = set().union(*OPTIONAL_MODULES.values())
    modules = []
    for layer in layers:
        for path in sorted((PACKAGE / layer).rglob('*.py')):
            rel = path.relative_to(ROOT).with_suffix('')
            modules.append('.'.join(rel.parts).removesuffix('.__init__'))
    return [m for m in modules if m not in optional]


def test_core_imports_no_rclpy():
    """Importing every pure layer, module by module, never loads rclpy."""
    modules = _module_names(PURE_LAYERS)
    code = ('import importlib, sys\n'
            f'for name in {modules!r}:\n'
            '    importlib.import_module(name)\n'
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py'))\n"  # noqa: E501
            'print(loaded)\n'
            'sys.exit(1 if loaded else 0)\n')
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, \
        f'core imported rclpy or failed:\n{result.stdout}{result.stderr}'
    assert len(modules) > 5


def test_optional_dependencies_are_imported_only_where_declared():
    """pyorbslam3 is imported by its one module (and the node built on it) only: no other module
    imports it or them at module level (a command or the docs generator may, when asked, in a
    function), and importing every other module of the package never loads it."""
    for dependency, owners in OPTIONAL_MODULES.items():
        for path in sorted(PACKAGE.rglob('*.py')):
            rel = path.relative_to(ROOT).with_suffix('')
            name = '.'.join(rel.parts).removesuffix('.__init__')
            tree = ast.parse(path.read_text(), str(path))
            imported = set()
            for node in _module_level(tree):
                if isinstance(node, ast.Import):
                    imported.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    imported.add(node.module)
                    imported.update(f'{node.module}.{alias.name}' for alias in node.names)
            if name in owners:
                continue
            assert dependency not in {i.split('.')[0] for i in imported}, \
                f'{rel} imports {dependency}'
            assert not (imported & owners), f'{rel} imports {sorted(imported & owners)}'
        modules = _module_names(list(ALLOWED)) + ['semseg_ros.cli']
        code = ('import importlib, sys\n'
                f'for name in {modules!r}:\n'
                '    importlib.import_module(name)\n'
                f'sys.exit(1 if {dependency!r} in sys.modules else 0)\n')
        result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, \
            f'importing the package loaded {dependency}:\n{result.stdout}{result.stderr}'


def _module_level(tree):
    """Yield the nodes of a module outside function bodies (what runs on import)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))
