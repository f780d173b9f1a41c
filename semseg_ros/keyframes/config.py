"""Keyframe-selection configuration: one flat YAML file, validated key by key.

The shipped file is ``config/keyframes.yaml`` (commented, one entry per key). A configuration
is a plain ``dict`` with exactly the keys of :data:`CONFIG_KEYS`, each declared once in
``_KEYS`` with its checker and its :class:`~semseg_ros.core.options.Option` (description,
range, read-only), from which the keyframe node's parameters are generated;
``class_weights`` is the only nested value (class name -> weight). For ROS parameters,
:func:`flatten_keyframe_config` turns it into ``class_weights.<ClassName>`` entries and
:func:`validate_keyframe_config` accepts that dotted form back, so a node can declare every
key as a parameter, read them all and validate::

    config = load_keyframe_config()                  # shipped defaults
    config = load_keyframe_config('my_robot.yaml')   # a complete file of one's own
    config = validate_keyframe_config(dict(config, min_gap_frames=3))  # programmatic override
"""

from pathlib import Path
import sys
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import yaml

from semseg_ros.core.classes import load_class_set
from semseg_ros.core.options import Option
from semseg_ros.core.resources import config_dir

NOVELTY_METRICS = ('intersection', 'hellinger')
WEIGHT_KEYS = ('weight_quality', 'weight_semantic', 'weight_diversity', 'weight_novelty',
               'weight_static')


def _number(low: float, high: float, low_open: bool = False, high_open: bool = False):
    """Return a checker for a real number in a range (ints accepted, bools not).

    The checker's ``limits`` is the closed range a ROS descriptor can state (an infinite bound
    as the largest float); the checker itself also refuses an open bound.
    """
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
    check.limits = (low, min(high, sys.float_info.max))
    check.open_ends = (low_open, high_open)
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
    check.limits = (low, high)
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


def _key(check: Callable[[Any], Tuple[Any, Optional[str]]], description: str,
         read_only: bool = False, choices: Tuple[str, ...] = ()):
    """Declare one key: its checker and its :class:`Option` (range taken from the checker)."""
    return check, Option(description, read_only=read_only,
                         limits=getattr(check, 'limits', None), choices=choices,
                         open_ends=getattr(check, 'open_ends', (False, False)))


_UNIT = _number(0.0, 1.0)
_INF = float('inf')
_WEIGHT = _number(0.0, _INF, high_open=True)
_POLICY = 'Selection policy (fixed at start-up: changing it would restart the sequence). '

# Every key, declared once: checker (YAML and parameter validation) and option (the keyframe
# node's ParameterDescriptor, the docs' parameter table). Scoring keys can change at run time.
_KEYS = {
    'class_set': _key(_string, 'Class set of the label ids: a shipped name (camvid, '
                      'cityscapes) or a class-set YAML path.', read_only=True),
    'class_weights': _key(_weight_map, 'Semantic weight per class name (0: useless to SLAM, '
                          '1: most useful); the node has one class_weights.<Class> parameter '
                          'per class.'),
    'default_class_weight': _key(_UNIT, 'Semantic weight of classes the config file does not '
                                 'name (in the node every class has its own '
                                 'class_weights.<Class> parameter, which this only '
                                 'initialises).'),
    'confidence_weighting': _key(_boolean, 'With a confidence map, each pixel counts '
                                 'confidence/255 of its class weight.'),
    'dynamic_classes': _key(_name_list, 'Names of the classes that move: they lower the score '
                            'and form ~/dynamic_mask.'),
    'dynamic_dilation_px': _key(_integer(0, 255), 'Growth of ~/dynamic_mask in pixels (disc '
                                'radius).'),
    'label_stride': _key(_integer(1, 64), 'Class histograms count every label_stride-th row '
                         'and column.'),
    'sharpness_scale': _key(_number(0.0, _INF, low_open=True, high_open=True),
                            'Variance of the Laplacian at which sharpness is 0.5 (> 0; depends '
                            'on resolution).'),
    'dark_level': _key(_integer(0, 254), 'Grey levels <= this count as crushed black.'),
    'bright_level': _key(_integer(1, 255), 'Grey levels >= this count as burnt white.'),
    'max_clipped_fraction': _key(_number(0.0, 1.0, low_open=True), 'Clipped fraction at which '
                                 'exposure drops to 0.'),
    'target_brightness': _key(_number(0.0, 1.0, low_open=True, high_open=True),
                              'Mean grey level (0..1) of the best exposure.'),
    'novelty_grid': _key(_integer(1, 16), 'Novelty compares class histograms on an N x N grid '
                         'of cells.', read_only=True),
    'novelty_metric': _key(_metric, 'Histogram distance of the novelty term.', read_only=True,
                           choices=NOVELTY_METRICS),
    'weight_quality': _key(_WEIGHT, 'Weight of quality (sharpness x exposure) in the total.'),
    'weight_semantic': _key(_WEIGHT, 'Weight of the semantic coverage in the total.'),
    'weight_diversity': _key(_WEIGHT, 'Weight of the class diversity in the total.'),
    'weight_novelty': _key(_WEIGHT, 'Weight of the novelty in the total.'),
    'weight_static': _key(_WEIGHT, 'Weight of 1 - dynamic fraction in the total.'),
    'min_gap_frames': _key(_integer(1, 1_000_000), _POLICY + 'Fewest frames between '
                           'keyframes.', read_only=True),
    'max_gap_frames': _key(_integer(1, 1_000_000), _POLICY + 'A keyframe is forced after this '
                           'many frames.', read_only=True),
    'min_gap_s': _key(_number(0.0, _INF, high_open=True), _POLICY + 'Fewest seconds between '
                      'keyframes.', read_only=True),
    'max_gap_s': _key(_number(0.0, _INF, low_open=True, high_open=True), _POLICY + 'A keyframe '
                      'is forced after this many seconds.', read_only=True),
    'window_frames': _key(_integer(0, 1_000_000), _POLICY + 'The best candidate is confirmed '
                          'once this many newer frames did not beat it (the most a decision '
                          'is late; 0 = greedy).', read_only=True),
    'novelty_threshold': _key(_number(0.0, 1.0, low_open=True), _POLICY + 'Novelty that makes '
                              'an immediate keyframe.', read_only=True),
    'quality_floor': _key(_UNIT, _POLICY + 'Frames of lower quality are chosen only when the '
                          'maximum gap forces it.', read_only=True),
    'min_shared_features': _key(_integer(0, 100_000), _POLICY + 'Visual-overlap mode when > 0 '
                                '(needs use_image): a keyframe is due once the newest frame '
                                'shares fewer verified static ORB correspondences with the '
                                'last keyframe. 0: novelty and window rules.', read_only=True),
    'orb_features': _key(_integer(8, 100_000), _POLICY + 'ORB features per frame for the '
                         'visual overlap.', read_only=True),
    'initial_keyframes': _key(_integer(0, 1_000_000), _POLICY + 'The first this many frames of '
                              'a sequence are keyframes (meeting the minimum gap), so that a '
                              'monocular SLAM fed only keyframes can initialise. 0: none (the '
                              'place-memory profile).', read_only=True),
}
# Key -> checker returning (normalised value, None) or (None, what was expected).
CONFIG_KEYS: Dict[str, Callable[[Any], Tuple[Any, Optional[str]]]] = {
    name: check for name, (check, _) in _KEYS.items()}
# Key -> option, for every key that is one ROS parameter (class_weights is one per class).
KEYFRAME_OPTIONS: Dict[str, Option] = {
    name: spec for name, (_, spec) in _KEYS.items() if name != 'class_weights'}


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
