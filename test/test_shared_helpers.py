"""The library's shared helpers: size parsing, atomic PNG writing, latency statistics."""

import argparse

import cv2
import numpy as np
import pytest

from semseg_ros.core.files import write_png
from semseg_ros.core.latency import latency_summary
from semseg_ros.core.sizes import parse_size, SizeError


def test_parse_size_reads_wxh_and_names_bad_text():
    """Sizes parse in any case; bad text is a ValueError argparse shows as it is."""
    assert parse_size('512x256') == (512, 256) and parse_size('480X360') == (480, 360)
    for text in ('big', '512', '0x10', '-4x8', '1x2x3'):
        with pytest.raises(SizeError, match=repr(text)):
            parse_size(text)
    parser = argparse.ArgumentParser()
    parser.add_argument('--size', type=parse_size)
    with pytest.raises(SystemExit):
        parser.parse_args(['--size', 'big'])
    assert issubclass(SizeError, ValueError)


def test_write_png_round_trips_colour_and_mono(tmp_path):
    """RGB and mono images come back equal; nothing but the file is left in the folder."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    mono = rng.integers(0, 256, (6, 9), dtype=np.uint8)
    write_png(tmp_path / 'c.png', rgb)
    write_png(tmp_path / 'm.png', mono)
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(tmp_path / 'c.png')), cv2.COLOR_BGR2RGB),
                          rgb)
    assert np.array_equal(cv2.imread(str(tmp_path / 'm.png'), cv2.IMREAD_UNCHANGED), mono)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['c.png', 'm.png']


def test_latency_summary_figures():
    """Median, p90, p95, mean, min, max of a known series; None for an empty one."""
    values = list(range(1, 101))
    summary = latency_summary(values)
    assert summary['count'] == 100 and summary['median_ms'] == pytest.approx(50.5)
    assert summary['p95_ms'] == pytest.approx(np.percentile(values, 95))
    assert summary['p90_ms'] == pytest.approx(np.percentile(values, 90))
    assert (summary['min_ms'], summary['max_ms']) == (1, 100)
    assert latency_summary([])['median_ms'] is None
