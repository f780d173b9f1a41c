"""Confusion-matrix metrics against examples computed by hand."""

import json
import math

import numpy as np
import pytest
import torch

from semseg_ros.core.metrics import ConfusionMatrix

# 3 classes, 255 void. Ground truth / prediction per pixel:
#   gt   0 0 1 1 2 255
#   pred 0 1 1 1 0 2
# counted (void skipped): TP = [1, 2, 0]; FP = [1, 1, 0]; FN = [1, 0, 1]
TARGET = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
PRED = np.array([[0, 1, 1], [1, 0, 2]], np.uint8)


def _example():
    matrix = ConfusionMatrix(3, ignore_index=255)
    matrix.update(PRED, TARGET)
    return matrix


def test_hand_computed_example():
    """Matrix, IoU, mIoU, pixel and class accuracy equal the hand-computed figures."""
    matrix = _example()
    assert matrix.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert matrix.total == 5
    np.testing.assert_allclose(matrix.iou(), [1 / 3, 2 / 3, 0.0])
    assert matrix.miou() == pytest.approx(1 / 3)
    assert matrix.pixel_accuracy() == pytest.approx(3 / 5)
    np.testing.assert_allclose(matrix.class_accuracy(), [0.5, 1.0, 0.0])
    assert matrix.mean_class_accuracy() == pytest.approx(0.5)


def test_absent_class_is_left_out_of_the_means():
    """A class in neither ground truth nor prediction has NaN IoU and does not count."""
    matrix = ConfusionMatrix(4, ignore_index=255)
    matrix.update(PRED, TARGET)
    assert math.isnan(matrix.iou()[3])
    assert matrix.miou() == pytest.approx(1 / 3)
    assert math.isnan(matrix.class_accuracy()[3])
    assert matrix.mean_class_accuracy() == pytest.approx(0.5)


def test_class_only_predicted_counts_as_zero_iou():
    """A class predicted but absent from the ground truth has IoU 0 and lowers the mean."""
    matrix = ConfusionMatrix(3)
    matrix.update(np.array([0, 0, 2]), np.array([0, 0, 0]))
    np.testing.assert_allclose(matrix.iou(), [2 / 3, np.nan, 0.0])
    assert matrix.miou() == pytest.approx(1 / 3)
    assert matrix.mean_class_accuracy() == pytest.approx(2 / 3)  # class 2 has no support


def test_torch_and_numpy_inputs_agree_and_updates_accumulate():
    """Torch tensors count like numpy arrays; two updates equal one over both batches."""
    by_numpy = _example()
    by_torch = ConfusionMatrix(3, ignore_index=255)
    by_torch.update(torch.from_numpy(PRED[:1]), torch.from_numpy(TARGET[:1]).long())
    by_torch.update(torch.from_numpy(PRED[1:]), torch.from_numpy(TARGET[1:]))
    np.testing.assert_array_equal(by_torch.matrix, by_numpy.matrix)


def test_unlabelled_predictions_are_misses_charged_to_no_class():
    """A pixel predicted 255 (LabelInfo's unlabelled) lowers its class's IoU and recall only.

    Ground truth 0 0 1 1, prediction 0 255 1 255: class 0 TP 1 FN 1, class 1 TP 1 FN 1.
    """
    target = np.array([0, 0, 1, 1], np.uint8)
    pred = np.array([0, 255, 1, 255], np.uint8)
    by_numpy = ConfusionMatrix(3, ignore_index=11)
    by_numpy.update(pred, target)
    by_torch = ConfusionMatrix(3, ignore_index=11)
    by_torch.update(torch.from_numpy(pred), torch.from_numpy(target))
    for matrix in (by_numpy, by_torch):
        assert matrix.matrix.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
        assert matrix.unlabeled.tolist() == [1, 1, 0] and matrix.total == 4
        np.testing.assert_allclose(matrix.iou()[:2], [0.5, 0.5])
        assert math.isnan(matrix.iou()[2])
        np.testing.assert_allclose(matrix.class_accuracy()[:2], [0.5, 0.5])
        assert matrix.pixel_accuracy() == pytest.approx(0.5)
    merged = by_numpy.merge(by_torch)
    assert merged.unlabeled.tolist() == [2, 2, 0] and merged.as_dict()['unlabeled'] == [2, 2, 0]
    merged.reset()
    assert merged.total == 0


def test_merge_adds_counts_and_empty_matrix_has_nan_figures():
    """merge sums two matrices; an empty matrix reports NaN, not a division error."""
    matrix = _example().merge(_example())
    assert matrix.total == 10
    assert matrix.miou() == pytest.approx(1 / 3)
    empty = ConfusionMatrix(3, 255)
    assert math.isnan(empty.miou()) and math.isnan(empty.pixel_accuracy())
    assert empty.all_reduce() is empty  # no process group: unchanged
    with pytest.raises(ValueError, match='4-class'):
        empty.merge(ConfusionMatrix(4))


def test_as_dict_is_json_with_every_figure():
    """as_dict names classes, writes NaN as null and carries the matrix."""
    matrix = ConfusionMatrix(4, ignore_index=255)
    matrix.update(PRED, TARGET)
    figures = json.loads(json.dumps(matrix.as_dict(['a', 'b', 'c', 'd'])))
    assert figures['iou'] == {'a': pytest.approx(1 / 3), 'b': pytest.approx(2 / 3), 'c': 0.0,
                              'd': None}
    assert figures['miou'] == pytest.approx(1 / 3)
    assert figures['pixel_accuracy'] == pytest.approx(0.6)
    assert figures['mean_class_accuracy'] == pytest.approx(0.5)
    assert figures['confusion_matrix'][0] == [1, 1, 0, 0]
    assert figures['pixels'] == 5
    with pytest.raises(ValueError, match='3 class names given for 4 classes'):
        matrix.as_dict(['a', 'b', 'c'])


@pytest.mark.parametrize('pred, target, message', [
    (np.array([0, 3]), np.array([0, 1]), 'predicted id 3'),
    (np.array([0, 1]), np.array([0, 7]), 'ground-truth id 7'),
    (np.array([0, 1, 1]), np.array([0, 1]), 'differs'),
])
def test_bad_ids_and_shapes_are_refused(pred, target, message):
    """Ids outside the classes (other than void) and mismatched shapes raise ValueError."""
    with pytest.raises(ValueError, match=message):
        ConfusionMatrix(3, ignore_index=255).update(pred, target)


def test_ignore_index_must_not_be_a_class():
    """A void id inside the class range is refused."""
    with pytest.raises(ValueError, match='is a class id'):
        ConfusionMatrix(3, ignore_index=2)
