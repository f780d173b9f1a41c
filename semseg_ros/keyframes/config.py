"""Keyframe-selection configuration: one flat YAML file, validated key by key.

The shipped file is ``config/keyframes.yaml`` (commented, one entry per key). A configuration
is a plain ``dict`` with exactly the keys of :data:`CONFIG_KEYS`; ``class_weights`` is the only
nested value (class name -> weight). For ROS parameters, :func:`flatten_keyframe_config` turns
it into ``class_weights.<ClassName>`` entries and :func:`validate_keyframe_config` accepts that
dotted form back, so a node can declare every key as a parameter, read them all and validate::

    config = load_keyframe_config()                  # shipped defaults
    config = load_keyframe_config('my_robot.yaml')   # a complete file of one's own
    config = validate_keyframe_config(dict(config, min_gap_frames=3))  # programmatic override
"""

from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import yaml

from semseg_ros.core.classes import load_class_set
from semseg_ros.core.resources import config_dir

NOVELTY_METRICS = ('intersection', 'hellinger')
WEIGHT_KEYS = ('weight_quality', 'weight_semantic', 'weight_diversity', 'weight_novelty',
               'weight_static')


def _number(low: float, high: float, low_open: bool = False, high_open: bool = False):
    """Return a checker for a real number in a range (ints accepted, bools not)."""
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, 'a number'
        value = float(value)
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high or value != value:
            return None, (f'a number in {"(" if low_open else "["}{low}, {high}'
                          f'{")" if high_open else "]"}')
        return value, None
    return check


def _integer(low: int, high: int):
    """Return a checker for an integer in [low, high] (integral floats accepted, bools not)."""
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or float(value) != int(value):
            return None, 'an integer'
        if not low <= int(value) <= high:
            return None, f'an integer in [{low}, {high}]'
        return int(value), None
    return check


def _boolean(value):
    """Check a boolean."""
    return (value, None) if isinstance(value, bool) else (None, 'true or false')


def _string(value):
    """Check a non-empty string."""
    return (value, None) if isinstance(value, str) and value else (None, 'a non-empty string')


def _metric(value):
    """Check a novelty metric name."""
    if value in NOVELTY_METRICS:
        return value, None
    return None, 'one of ' + ', '.join(NOVELTY_METRICS)


def _name_list(value):
    """Check a list of class names (may be empty)."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value), None
    return None, 'a list of class names'


def _weight_map(value):
    """Check a mapping class name -> weight in [0, 1]."""
    if not isinstance(value, Mapping):
        return None, 'a mapping of class name to weight in [0, 1]'
    weights = {}
    for name, weight in value.items():
        checked, _ = _number(0.0, 1.0)(weight)
        if not isinstance(name, str) or checked is None:
            return None, f'a mapping of class name to weight in [0, 1] (bad entry {name!r})'
        weights[name] = checked
    return weights, None


_UNIT = _number(0.0, 1.0)
_INF = float('inf')

# Key -> checker returning (normalised value, None) or (None, what was expected).
CONFIG_KEYS: Dict[str, Callable[[Any], Tuple[Any, Optional[str]]]] = {
    'class_set': _string,
    'class_weights': _weight_map,
    'default_class_weight': _UNIT,
    'confidence_weighting': _boolean,
    'dynamic_classes': _name_list,
    'dynamic_dilation_px': _integer(0, 255),
    'label_stride': _integer(1, 64),
    'sharpness_scale': _number(0.0, _INF, low_open=True, high_open=True),
    'dark_level': _integer(0, 254),
    'bright_level': _integer(1, 255),
    'max_clipped_fraction': _number(0.0, 1.0, low_open=True),
    'target_brightness': _number(0.0, 1.0, low_open=True, high_open=True),
    'novelty_grid': _integer(1, 16),
    'novelty_metric': _metric,
    'weight_quality': _number(0.0, _INF, high_open=True),
    'weight_semantic': _number(0.0, _INF, high_open=True),
    'weight_diversity': _number(0.0, _INF, high_open=True),
    'weight_novelty': _number(0.0, _INF, high_open=True),
    'weight_static': _number(0.0, _INF, high_open=True),
    'min_gap_frames': _integer(1, 1_000_000),
    'max_gap_frames': _integer(1, 1_000_000),
    'min_gap_s': _number(0.0, _INF, high_open=True),
    'max_gap_s': _number(0.0, _INF, low_open=True, high_open=True),
    'window_frames': _integer(0, 1_000_000),
    'novelty_threshold': _number(0.0, 1.0, low_open=True),
    'quality_floor': _UNIT,
    'min_shared_features': _integer(0, 100_000),
    'orb_features': _integer(8, 100_000),
}


def default_keyframe_config_path() -> Path:
    """Return the path of the shipped ``keyframes.yaml``."""
    return config_dir() / 'keyframes.yaml'


def load_keyframe_config(path: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
    """Load and validate a keyframe configuration file.

    Args:
        path: YAML file; ``None`` loads the shipped ``config/keyframes.yaml``.

    Returns:
        The validated configuration (see :func:`validate_keyframe_config`).

    Raises:
        ValueError: Unreadable file, not a mapping, or any invalid key (the message names the
            file and the key).
    """
    path = Path(path) if path is not None else default_keyframe_config_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f'{path}: cannot read the keyframe configuration ({error})') from error
    if not isinstance(raw, Mapping):
        raise ValueError(f'{path}: expected a mapping of keyframe settings, got '
                         f'{type(raw).__name__}')
    return validate_keyframe_config(raw, source=str(path))


def validate_keyframe_config(raw: Mapping[str, Any], source: str = 'keyframe config'
                             ) -> Dict[str, Any]:
    """Check a configuration mapping and return a normalised copy.

    Every key of :data:`CONFIG_KEYS` must be present and no other key may be. Class weights may
    come nested (``class_weights: {Building: 1.0}``) or dotted (``class_weights.Building: 1.0``,
    the form of ROS parameters), or both (dotted entries win). Class names in ``class_weights``
    and ``dynamic_classes`` are checked against the class set.

    Args:
        raw: The settings.
        source: What to name in error messages (a file path, ``ROS parameters``...).

    Returns:
        A new dict: ints as int, reals as float, ``class_weights`` a plain dict.

    Raises:
        ValueError: Naming the source, the key, the value and what was expected.
    """
    settings = {k: v for k, v in raw.items() if not str(k).startswith('class_weights.')}
    dotted = {str(k).split('.', 1)[1]: v for k, v in raw.items()
              if str(k).startswith('class_weights.')}
    if dotted:
        nested = settings.get('class_weights') or {}
        if not isinstance(nested, Mapping):
            nested = {}
        settings['class_weights'] = {**nested, **dotted}
    missing = [k for k in CONFIG_KEYS if k not in settings]
    unknown = sorted(str(k) for k in settings if k not in CONFIG_KEYS)
    if unknown:
        raise ValueError(f'{source}: unknown key(s) {", ".join(unknown)}; valid keys: '
                         f'{", ".join(CONFIG_KEYS)}')
    if missing:
        raise ValueError(f'{source}: missing key(s) {", ".join(missing)} (every key is '
                         f'required; see {default_keyframe_config_path()})')
    config = {}
    for key, check in CONFIG_KEYS.items():
        value, expected = check(settings[key])
        if expected is not None:
            raise ValueError(f'{source}: {key} must be {expected}, got {settings[key]!r}')
        config[key] = value
    _check_relations(config, source)
    return config


def _check_relations(config: Dict[str, Any], source: str) -> None:
    """Check constraints between keys and resolve class names against the class set."""
    def fail(message):
        raise ValueError(f'{source}: {message}')

    if config['dark_level'] >= config['bright_level']:
        fail(f'dark_level ({config["dark_level"]}) must be below bright_level '
             f'({config["bright_level"]})')
    if config['min_gap_frames'] > config['max_gap_frames']:
        fail(f'min_gap_frames ({config["min_gap_frames"]}) must not exceed max_gap_frames '
             f'({config["max_gap_frames"]})')
    if config['min_gap_s'] > config['max_gap_s']:
        fail(f'min_gap_s ({config["min_gap_s"]}) must not exceed max_gap_s '
             f'({config["max_gap_s"]})')
    if sum(config[k] for k in WEIGHT_KEYS) <= 0:
        fail(f'at least one of {", ".join(WEIGHT_KEYS)} must be positive')
    try:
        class_set = load_class_set(config['class_set'])
    except ValueError as error:
        fail(f'class_set: {error}')
    for key, names in (('class_weights', config['class_weights']),
                       ('dynamic_classes', config['dynamic_classes'])):
        unknown = [n for n in names if n not in class_set.names]
        if unknown:
            fail(f'{key}: unknown class name(s) {", ".join(map(repr, unknown))}; classes of '
                 f'{class_set.name!r}: {", ".join(class_set.names)}')


def flatten_keyframe_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """Return the configuration with ``class_weights`` spread into dotted keys.

    The result maps every key to a bool, int, float, str or list of str, the value types of
    ROS 2 parameters: ``class_weights: {Building: 1.0}`` becomes
    ``class_weights.Building: 1.0``. :func:`validate_keyframe_config` reads it back.
    """
    flat = {k: v for k, v in config.items() if k != 'class_weights'}
    for name, weight in config.get('class_weights', {}).items():
        flat[f'class_weights.{name}'] = weight
    return flat
