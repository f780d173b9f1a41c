"""Keyframe scoring terms on constructed label maps and images with known answers."""

import math

import cv2
import numpy as np
import pytest

from semseg_ros.core.classes import load_class_set, mark_unlabeled, UNLABELED_ID
from semseg_ros.keyframes.config import load_keyframe_config
from semseg_ros.keyframes.scoring import (dynamic_mask, FrameScore, histogram_novelty,
                                          KeyframeScorer, ScoreWeights, sharpness_score)

CAMVID = load_class_set('camvid')
SKY, BUILDING, POLE, ROAD = (CAMVID.names.index(n) for n in ('Sky', 'Building', 'Pole', 'Road'))
CAR, PEDESTRIAN = CAMVID.names.index('Car'), CAMVID.names.index('Pedestrian')
VOID = CAMVID.ignore_index
H, W = 120, 160


def scorer(**overrides):
    """Return a scorer of the shipped configuration with some keys replaced."""
    return KeyframeScorer(dict(load_keyframe_config(), **overrides))


def half_building_half_sky():
    """Sky on the top half, Building on the bottom half."""
    labels = np.full((H, W), BUILDING, np.uint8)
    labels[:H // 2] = SKY
    return labels


def test_half_building_half_sky_coverage_and_entropy():
    """Coverage is the mean class weight; entropy of a 50/50 split is log 2 / log 11."""
    score = scorer(class_weights={'Building': 1.0, 'Sky': 0.1}).score(half_building_half_sky())
    assert score.semantic == pytest.approx(0.55)
    assert score.diversity == pytest.approx(math.log(2) / math.log(CAMVID.num_classes))
    assert score.dynamic == 0.0 and score.void == 0.0
    single = scorer().score(np.full((H, W), ROAD, np.uint8))
    assert single.diversity == 0.0
    assert single.semantic == pytest.approx(load_keyframe_config()['class_weights']['Road'])


def test_void_counts_zero_weight_and_default_weight_applies():
    """Void pixels weigh 0 in coverage; classes not named get default_class_weight."""
    labels = np.full((H, W), POLE, np.uint8)
    labels[:, :W // 4] = VOID
    score = scorer(class_weights={'Building': 1.0}, default_class_weight=0.4).score(labels)
    assert score.void == pytest.approx(0.25)
    assert score.semantic == pytest.approx(0.75 * 0.4)
    assert score.diversity == 0.0  # one class among the labelled pixels


def test_confidence_weighting():
    """With confidence weighting, each pixel counts confidence / 255 of its weight."""
    labels = half_building_half_sky()
    confidence = np.full((H, W), 255, np.uint8)
    confidence[H // 2:] = 51  # Building pixels at 20 % confidence
    weights = {'Building': 1.0, 'Sky': 0.0}
    weighted = scorer(class_weights=weights).score(labels, confidence=confidence)
    assert weighted.semantic == pytest.approx(0.5 * 0.2)
    plain = scorer(class_weights=weights, confidence_weighting=False)
    assert plain.score(labels, confidence=confidence).semantic == pytest.approx(0.5)


def test_dynamic_fraction():
    """All-car is fully dynamic; a quarter of pedestrians is a quarter."""
    all_car = scorer().score(np.full((H, W), CAR, np.uint8))
    assert all_car.dynamic == 1.0
    labels = np.full((H, W), ROAD, np.uint8)
    labels[:H // 2, :W // 2] = PEDESTRIAN
    assert scorer().score(labels).dynamic == pytest.approx(0.25)
    assert scorer(dynamic_classes=[]).score(labels).dynamic == 0.0


def test_uniform_grey_image_has_zero_sharpness_and_good_exposure():
    """A flat image has no Laplacian energy; mid-grey at the target is well exposed."""
    labels = half_building_half_sky()
    grey = np.full((H, W, 3), round(0.45 * 255), np.uint8)
    score = scorer(target_brightness=0.45).score(labels, image=grey)
    assert score.laplacian_var == 0.0 and score.sharpness == 0.0
    assert score.exposure == pytest.approx(1.0, abs=0.01)
    assert score.clipped_dark == 0.0 and score.clipped_bright == 0.0
    assert score.quality == 0.0  # sharpness * exposure


def test_checkerboard_is_sharp_and_blurring_lowers_sharpness():
    """A hard-edged checkerboard saturates sharpness; its blurred copy scores lower."""
    cells = (np.indices((H, W)) // 8).sum(axis=0) % 2
    board = np.where(cells, 200, 40).astype(np.uint8)
    board = np.dstack([board] * 3)
    sharp = scorer().score(half_building_half_sky(), image=board)
    assert sharp.sharpness > 0.95
    blurred = scorer().score(half_building_half_sky(), image=cv2.GaussianBlur(board, (9, 9), 3))
    assert 0.0 < blurred.sharpness < sharp.sharpness
    assert sharpness_score(300.0, 300.0) == pytest.approx(0.5)


def test_clipped_images_have_zero_exposure():
    """All-white and all-black frames are fully clipped: exposure and quality 0."""
    labels = half_building_half_sky()
    white = scorer().score(labels, image=np.full((H, W, 3), 255, np.uint8))
    assert white.clipped_bright == 1.0 and white.exposure == 0.0 and white.quality == 0.0
    black = scorer().score(labels, image=np.zeros((H, W), np.uint8))
    assert black.clipped_dark == 1.0 and black.exposure == 0.0 and black.brightness == 0.0


def test_exposure_clipping_term():
    """A quarter of the pixels burnt white with a 0.5 tolerance halves the clipping term."""
    image = np.full((H, W), 100, np.uint8)
    image[:H // 2, :W // 2] = 255
    score = scorer(max_clipped_fraction=0.5).score(half_building_half_sky(), image=image)
    brightness = (0.75 * 100 + 0.25 * 255) / 255
    target = load_keyframe_config()['target_brightness']
    expected = (1 - abs(brightness - target) / max(target, 1 - target)) * (1 - 0.25 / 0.5)
    assert score.brightness == pytest.approx(brightness)
    assert score.exposure == pytest.approx(expected)


def test_novelty_identical_disjoint_and_partial():
    """Same content -> 0, disjoint -> 1 (both metrics), one changed cell of 4 -> 0.25."""
    for metric in ('intersection', 'hellinger'):
        s = scorer(novelty_grid=2, novelty_metric=metric)
        base = s.score(half_building_half_sky())
        assert base.novelty == 1.0  # no reference
        assert s.score(half_building_half_sky(), reference=base.histograms).novelty == 0.0
        other = np.full((H, W), ROAD, np.uint8)
        assert s.score(other, reference=base.histograms).novelty == pytest.approx(1.0)
        one_cell = half_building_half_sky()
        one_cell[:H // 2, :W // 2] = ROAD  # top-left cell: Sky -> Road
        assert s.score(one_cell, reference=base.histograms).novelty == pytest.approx(0.25)


def test_grid_novelty_sees_moved_content_a_global_histogram_misses():
    """Swapping left and right halves keeps the global histogram but not the grid's."""
    labels = np.full((H, W), BUILDING, np.uint8)
    labels[:, :W // 2] = SKY
    swapped = labels[:, ::-1].copy()
    for grid, expected in ((1, 0.0), (2, 1.0)):
        s = scorer(novelty_grid=grid)
        reference = s.score(labels).histograms
        assert s.score(swapped, reference=reference).novelty == pytest.approx(expected)


def test_histogram_novelty_rejects_mismatched_shapes_and_metrics():
    """Another grid or an unknown metric is a clear error."""
    a = scorer(novelty_grid=2).score(half_building_half_sky()).histograms
    b = scorer(novelty_grid=3).score(half_building_half_sky()).histograms
    with pytest.raises(ValueError, match='differ'):
        histogram_novelty(a, b)
    with pytest.raises(ValueError, match='hellinger'):
        histogram_novelty(a, a, 'cosine')


def test_total_is_the_documented_weighted_mean():
    """total = sum(w * term) / sum(w) with static = 1 - dynamic."""
    labels = half_building_half_sky()
    labels[:10, :10] = CAR
    cells = (np.indices((H, W)) // 4).sum(axis=0) % 2
    image = np.where(cells, 160, 60).astype(np.uint8)
    config = dict(load_keyframe_config(), weight_quality=2.0, weight_semantic=1.0,
                  weight_diversity=0.5, weight_novelty=0.25, weight_static=0.25)
    s = KeyframeScorer(config)
    reference = s.score(half_building_half_sky()).histograms
    score = s.score(labels, image=image, reference=reference)
    expected = (2.0 * score.quality + 1.0 * score.semantic + 0.5 * score.diversity
                + 0.25 * score.novelty + 0.25 * (1 - score.dynamic)) / 4.0
    assert score.total == pytest.approx(expected)
    assert 0 < score.novelty < 1 and 0 < score.dynamic < 1 and 0 < score.quality < 1
    assert score.weights == ScoreWeights(2.0, 1.0, 0.5, 0.25, 0.25)


def test_relative_to_recomputes_novelty_and_total():
    """Re-basing a score on another reference changes novelty and total consistently."""
    s = scorer()
    first = s.score(half_building_half_sky())
    road = s.score(np.full((H, W), ROAD, np.uint8), reference=first.histograms)
    rebased = road.relative_to(road.histograms)
    assert rebased.novelty == 0.0
    assert road.total - rebased.total == pytest.approx(
        s.weights.novelty * road.novelty / sum(vars(s.weights).values()))
    with pytest.raises(ValueError, match='histograms'):
        FrameScore(total=0.5).relative_to(road.histograms)


def test_as_dict_holds_floats_and_leaves_out_missing_terms():
    """as_dict publishes floats only, without the image terms when no image was given."""
    without = scorer().score(half_building_half_sky()).as_dict()
    assert set(without) == {'total', 'quality', 'semantic', 'diversity', 'dynamic', 'novelty',
                            'void'}
    assert without['quality'] == 1.0
    image = np.full((H, W, 3), 90, np.uint8)
    with_image = scorer().score(half_building_half_sky(), image=image).as_dict()
    assert {'sharpness', 'exposure', 'brightness', 'clipped_dark', 'clipped_bright',
            'laplacian_var'} <= set(with_image)
    assert all(isinstance(v, float) for v in with_image.values())


def test_label_stride_changes_nothing_meaningful(samples):
    """Counting every 2nd or 4th row and column keeps the fractions of a real label map."""
    labels = cv2.imread(str(samples / 'valannot' / '0016E5_07959.png'), cv2.IMREAD_UNCHANGED)
    full = scorer(label_stride=1).score(labels)
    for stride in (2, 4):
        sub = scorer(label_stride=stride).score(labels)
        for term in ('semantic', 'diversity', 'dynamic', 'void'):
            assert getattr(sub, term) == pytest.approx(getattr(full, term), abs=0.01), term
        assert histogram_novelty(sub.histograms, full.histograms) < 0.02


def test_dynamic_mask_dilation_grows_by_the_radius():
    """One car pixel becomes a disc of the radius; a block grows by it on every side."""
    labels = np.full((61, 61), ROAD, np.uint8)
    labels[30, 30] = CAR
    for radius in (0, 1, 4, 7):
        mask = dynamic_mask(labels, [CAR], radius)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        ys, xs = np.nonzero(mask)
        assert (ys.min(), ys.max(), xs.min(), xs.max()) == (30 - radius, 30 + radius,
                                                            30 - radius, 30 + radius)
        if radius > 1:  # a disc, not a square: the corners stay free
            assert mask[30 - radius, 30 - radius] == 0 and mask[30, 30 + radius] == 255
    block = np.full((80, 100), SKY, np.uint8)
    block[20:40, 30:60] = PEDESTRIAN
    block[70:, :] = BUILDING
    mask = dynamic_mask(block, [CAR, PEDESTRIAN], 5)
    ys, xs = np.nonzero(mask)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (15, 44, 25, 64)
    assert mask[15:45, 30:60].all() and mask[20:40, 25:65].all()
    assert not dynamic_mask(block, [CAR], 5).any()


def test_scorer_dynamic_mask_uses_config_radius():
    """KeyframeScorer.dynamic_mask takes the dynamic classes and radius of the config."""
    labels = np.full((40, 40), ROAD, np.uint8)
    labels[20, 20] = PEDESTRIAN
    mask = scorer(dynamic_dilation_px=3).dynamic_mask(labels)
    assert np.count_nonzero(mask[20]) == 7
    assert scorer(dynamic_classes=['Car']).dynamic_mask(labels).max() == 0


@pytest.mark.parametrize('labels, match', [
    (np.zeros((H, W), np.float32), 'uint8'),
    (np.zeros((H, W, 3), np.uint8), 'H x W'),
    (np.zeros((0, W), np.uint8), 'non-empty'),
    (np.full((H, W), 12, np.uint8), r'\[12\].*camvid'),
    (np.full((H, W), 200, np.uint8), r'\[200\]'),
])
def test_invalid_labels_are_rejected(labels, match):
    """Non-2-D, non-uint8 or out-of-set label maps raise a ValueError saying why."""
    with pytest.raises(ValueError, match=match):
        scorer().score(labels)


def test_void_id_is_accepted_and_ids_between_classes_and_void_are_not():
    """With void at 255 (Cityscapes), 255 is fine and 19..254 are rejected."""
    s = KeyframeScorer(dict(load_keyframe_config(), class_set='cityscapes', class_weights={},
                            dynamic_classes=['car']))
    labels = np.full((H, W), 255, np.uint8)
    labels[0, 0] = 0
    assert s.score(labels).void == pytest.approx(1.0, abs=0.01)
    labels[5, 5] = 19
    with pytest.raises(ValueError, match=r'\[19\]'):
        s.score(labels)


def test_image_and_confidence_must_match_the_labels():
    """Another size, dtype or channel count is a clear error; the caller resizes."""
    labels = half_building_half_sky()
    s = scorer()
    with pytest.raises(ValueError, match='differs from the label mask'):
        s.score(labels, image=np.zeros((H + 1, W, 3), np.uint8))
    with pytest.raises(ValueError, match='uint8'):
        s.score(labels, image=np.zeros((H, W, 3), np.float32))
    with pytest.raises(ValueError, match='H x W x 3'):
        s.score(labels, image=np.zeros((H, W, 4), np.uint8))
    with pytest.raises(ValueError, match='confidence'):
        s.score(labels, confidence=np.zeros((H, W, 3), np.uint8))


def test_unknown_class_name_lists_the_valid_ones():
    """A class weight or dynamic class not in the class set names the valid classes."""
    with pytest.raises(ValueError, match='Tractor.*Sky, Building'):
        scorer(class_weights={'Tractor': 1.0})
    with pytest.raises(ValueError, match='dynamic_classes.*Dog'):
        scorer(dynamic_classes=['Car', 'Dog'])


def test_scores_are_deterministic():
    """Scoring the same inputs twice gives the same terms."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CAMVID.num_classes + 1, (H, W)).astype(np.uint8)
    image = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    a, b = scorer().score(labels, image), scorer().score(labels, image)
    assert a.as_dict() == b.as_dict()
    assert np.array_equal(a.histograms, b.histograms)


def test_unlabelled_pixels_count_as_void_in_camvid_too():
    """LabelInfo's unlabelled id (255), written under the node's threshold, is void as well."""
    labels = half_building_half_sky()
    confidence = np.full((H, W), 200, np.uint8)
    confidence[:, :W // 4] = 50
    unlabelled = mark_unlabeled(labels, confidence, threshold=0.5)
    assert np.all(unlabelled[:, :W // 4] == UNLABELED_ID)
    np.testing.assert_array_equal(unlabelled[:, W // 4:], labels[:, W // 4:])
    assert scorer().score(unlabelled).void == pytest.approx(0.25)
    assert mark_unlabeled(labels, confidence, threshold=0.0) is labels
    labels[0, 0] = 254
    with pytest.raises(ValueError, match=r'\[254\].*void 11 or 255'):
        scorer().score(labels)
    with pytest.raises(ValueError, match='threshold must be in'):
        mark_unlabeled(labels, confidence, threshold=1.5)
