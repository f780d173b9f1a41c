"""The Nav2 recipe: the semantic segmentation layer's parameters file and the launch snippet.

The layer (C++, Nav2) is not installable here; its parameters file is checked against the
parameters the layer declares, the class set the node labels with, and the remappings the
DDS test runs the node with (``test_segmentation_node.py``).
"""

from pathlib import Path

import yaml

from ros_testing import NAV2_REMAPPINGS
from semseg_ros.core.classes import load_class_set

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / 'config' / 'nav2' / 'semantic_segmentation_layer.yaml'
# What kiwicampus/semantic_segmentation_layer (rolling, a70cf6e) declares: per layer, per
# observation source and per class type (src/semantic_segmentation_layer.cpp).
LAYER_PARAMETERS = {'plugin', 'enabled', 'combination_method', 'observation_sources',
                    'publish_debug_topics', 'use_approximate_time_sync'}
SOURCE_PARAMETERS = {'segmentation_topic', 'confidence_topic', 'labels_topic',
                     'pointcloud_topic', 'observation_persistence', 'expected_update_rate',
                     'class_types', 'max_obstacle_distance', 'min_obstacle_distance',
                     'tile_map_decay_time', 'visualize_tile_map', 'use_cost_selection'}
CLASS_TYPE_PARAMETERS = {'classes': list, 'base_cost': int, 'max_cost': int,
                         'mark_confidence': int, 'samples_to_max_cost': int,
                         'dominant_priority': bool}


def layer():
    """Return the layer's parameters from the recipe."""
    costmap = yaml.safe_load(RECIPE.read_text())['local_costmap']['local_costmap']
    parameters = costmap['ros__parameters']
    assert 'semantic_segmentation_layer' in parameters['plugins']
    return parameters['semantic_segmentation_layer']


def test_recipe_uses_only_the_layers_parameters():
    """Every key is one the layer declares, of the type it declares (a typo would be unused)."""
    params = layer()
    assert params['plugin'] == 'semantic_segmentation_layer::SemanticSegmentationLayer'
    sources = params['observation_sources'].split()
    assert set(params) - set(sources) <= LAYER_PARAMETERS
    for source in sources:
        class_types = params[source]['class_types']
        assert set(params[source]) - set(class_types) <= SOURCE_PARAMETERS
        for class_type in class_types:
            values = params[source][class_type]
            assert set(values) == set(CLASS_TYPE_PARAMETERS), class_type
            for key, kind in CLASS_TYPE_PARAMETERS.items():
                assert type(values[key]) is kind, f'{class_type}.{key}'
            assert 0 <= values['base_cost'] <= values['max_cost'] <= 254
            assert 0 <= values['mark_confidence'] <= 255


def test_every_camvid_class_has_exactly_one_cost():
    """The layer drops (with an error) a LabelInfo class name that no class type lists."""
    camera = layer()['camera']
    listed = [name for class_type in camera['class_types']
              for name in camera[class_type]['classes']]
    assert sorted(listed) == sorted(load_class_set('camvid').names)


def test_topics_are_the_remapped_outputs_and_the_docs_show_them():
    """The layer reads the node's outputs under the names the recipe remaps them to."""
    camera = layer()['camera']
    assert camera['segmentation_topic'] == NAV2_REMAPPINGS['~/label_mask']
    assert camera['confidence_topic'] == NAV2_REMAPPINGS['~/confidence']
    assert camera['labels_topic'] == NAV2_REMAPPINGS['~/label_info']
    docs = (REPO / 'docs' / 'nodes.md').read_text()
    for source, target in NAV2_REMAPPINGS.items():
        assert f"('{source}', '{target}')" in docs
    assert 'config/nav2/semantic_segmentation_layer.yaml' in docs
