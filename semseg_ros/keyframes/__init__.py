"""Semantic keyframe selection for visual SLAM (no rclpy).

After Alonso, Riazuelo and Murillo, "Enhancing V-SLAM keyframe selection with an efficient
convnet for semantic analysis" (ICRA 2019): score each frame from its segmentation (semantic
content, dynamic objects, novelty) and its image (sharpness, exposure), then choose keyframes
online with bounded delay.

Modules:
    config: ``load_keyframe_config`` / ``validate_keyframe_config`` for
        ``config/keyframes.yaml`` (flat keys, also the keyframe node's parameters).
    scoring: ``KeyframeScorer`` -> ``FrameScore`` per frame; ``dynamic_mask``.
    policy: ``KeyframePolicy`` (push / flush -> ``KeyframeDecision``) and the baselines
        ``uniform_selection`` and ``max_interval_selection``.
"""

from semseg_ros.keyframes.config import (flatten_keyframe_config, load_keyframe_config,
                                         validate_keyframe_config)
from semseg_ros.keyframes.policy import (KeyframeDecision, KeyframePolicy,
                                         max_interval_selection, uniform_selection)
from semseg_ros.keyframes.scoring import (dynamic_mask, FrameScore, histogram_novelty,
                                          KeyframeScorer, ScoreWeights)

__all__ = [
    'dynamic_mask', 'flatten_keyframe_config', 'FrameScore', 'histogram_novelty',
    'KeyframeDecision', 'KeyframePolicy', 'KeyframeScorer', 'load_keyframe_config',
    'max_interval_selection', 'ScoreWeights', 'uniform_selection', 'validate_keyframe_config',
]
