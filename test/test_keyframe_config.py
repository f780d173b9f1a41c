"""The keyframe configuration file: shipped defaults, validation errors, ROS-style flat form."""

import pytest
import yaml

from semseg_ros.keyframes.config import (CONFIG_KEYS, default_keyframe_config_path,
                                         flatten_keyframe_config, load_keyframe_config,
                                         validate_keyframe_config)
from semseg_ros.keyframes.policy import KeyframePolicy
from semseg_ros.keyframes.scoring import KeyframeScorer


def test_shipped_config_is_complete_and_builds_scorer_and_policy():
    """The shipped file has every key, consistent values, and builds both objects."""
    config = load_keyframe_config()
    assert set(config) == set(CONFIG_KEYS)
    assert isinstance(config['min_gap_frames'], int) and isinstance(config['max_gap_s'], float)
    assert config['class_weights']['Building'] > config['class_weights']['Sky']
    assert config['dynamic_classes'] == ['Car', 'Pedestrian', 'Bicyclist']
    scorer = KeyframeScorer(config)
    assert scorer.dynamic_ids == (8, 9, 10)
    policy = KeyframePolicy.from_config(config)
    assert policy.window_frames == config['window_frames']
    assert load_keyframe_config(default_keyframe_config_path()) == config


def test_every_key_is_documented_in_the_shipped_file():
    """Each key is preceded by a comment in the shipped YAML (or in its section)."""
    text = default_keyframe_config_path().read_text()
    lines = text.splitlines()
    for key in CONFIG_KEYS:
        [at] = [i for i, line in enumerate(lines) if line.startswith(f'{key}:')]
        assert lines[at - 1].startswith('#') or lines[at - 1].startswith(
            tuple(CONFIG_KEYS)), key


@pytest.mark.parametrize('key, value, match', [
    ('min_gap_frames', 0, r'min_gap_frames must be an integer in \[1'),
    ('min_gap_frames', 2.5, 'min_gap_frames must be an integer'),
    ('max_gap_s', -1.0, 'max_gap_s must be a number'),
    ('max_gap_s', 'long', 'max_gap_s must be a number'),
    ('quality_floor', 1.2, r'quality_floor must be a number in \[0.0, 1.0\]'),
    ('confidence_weighting', 'yes', 'confidence_weighting must be true or false'),
    ('novelty_metric', 'cosine', 'novelty_metric must be one of intersection, hellinger'),
    ('novelty_threshold', 0.0, 'novelty_threshold'),
    ('class_weights', {'Building': 2.0}, "class_weights.*bad entry 'Building'"),
    ('class_weights', {'Tractor': 0.5}, "unknown class name.*'Tractor'.*Sky, Building"),
    ('dynamic_classes', 'Car', 'dynamic_classes must be a list'),
    ('dynamic_classes', ['Car', 'Horse'], "dynamic_classes: unknown class name.*'Horse'"),
    ('class_set', 'mars', 'class_set: unknown class set'),
    ('dark_level', 250, 'dark_level .* must be below bright_level'),
    ('min_gap_frames', 1000, 'must not exceed max_gap_frames'),
    ('min_gap_s', 100.0, 'must not exceed max_gap_s'),
    ('min_shared_features', -1, 'min_shared_features must be an integer'),
    ('orb_features', 4, r'orb_features must be an integer in \[8'),
])
def test_bad_values_name_the_key(key, value, match):
    """Each invalid value is reported with its key and what was expected."""
    config = dict(load_keyframe_config(), **{key: value})
    with pytest.raises(ValueError, match=match):
        validate_keyframe_config(config)


def test_all_weights_zero_is_rejected():
    """The combined score needs at least one positive weight."""
    config = load_keyframe_config()
    config.update({k: 0.0 for k in CONFIG_KEYS if k.startswith('weight_')})
    with pytest.raises(ValueError, match='must be positive'):
        validate_keyframe_config(config)


def test_missing_and_unknown_keys_in_a_file(tmp_path):
    """A file missing a key or holding a stray one is named with the key."""
    config = load_keyframe_config()
    missing = dict(config)
    del missing['window_frames']
    path = tmp_path / 'missing.yaml'
    path.write_text(yaml.safe_dump(missing))
    with pytest.raises(ValueError, match=f'{path}: missing key.*window_frames'):
        load_keyframe_config(path)
    path.write_text(yaml.safe_dump(dict(config, windw_frames=3)))
    with pytest.raises(ValueError, match='unknown key.*windw_frames'):
        load_keyframe_config(path)


def test_unreadable_or_malformed_files(tmp_path):
    """A missing file, bad YAML or a non-mapping is a ValueError naming the file."""
    with pytest.raises(ValueError, match='nope.yaml'):
        load_keyframe_config(tmp_path / 'nope.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('min_gap_frames: [1,\n')
    with pytest.raises(ValueError, match='bad.yaml'):
        load_keyframe_config(bad)
    bad.write_text('- 1\n- 2\n')
    with pytest.raises(ValueError, match='expected a mapping'):
        load_keyframe_config(bad)


def test_flat_ros_form_round_trips():
    """class_weights spread to dotted keys (ROS parameters) validate back to the same config."""
    config = load_keyframe_config()
    flat = flatten_keyframe_config(config)
    assert 'class_weights' not in flat and flat['class_weights.Building'] == 1.0
    assert all(isinstance(v, (bool, int, float, str, list)) for v in flat.values())
    assert validate_keyframe_config(flat, source='ROS parameters') == config
    flat['class_weights.Sky'] = 0.5
    assert validate_keyframe_config(flat)['class_weights']['Sky'] == 0.5
    flat['class_weights.Moon'] = 0.5
    with pytest.raises(ValueError, match="ROS parameters: class_weights: unknown.*'Moon'"):
        validate_keyframe_config(flat, source='ROS parameters')


def test_integral_numbers_are_accepted_and_normalised():
    """ROS may hand 3.0 for an integer or 2 for a real: both are accepted and typed."""
    config = validate_keyframe_config(dict(load_keyframe_config(), window_frames=3.0,
                                           max_gap_s=2))
    assert config['window_frames'] == 3 and isinstance(config['window_frames'], int)
    assert config['max_gap_s'] == 2.0 and isinstance(config['max_gap_s'], float)
    with pytest.raises(ValueError, match='window_frames must be an integer'):
        validate_keyframe_config(dict(load_keyframe_config(), window_frames=True))
