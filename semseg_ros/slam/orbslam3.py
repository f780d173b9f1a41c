"""ORB-SLAM3 (pyorbslam3, GPL-3.0): the one module of the package that imports it.

Install it with the ``slam`` extra (``pip install .[slam]``; ``make`` does). Nothing imports
this module unless asked: the ``semseg slam`` command and the ORB-SLAM3 node load it when
they start (a test keeps that true), so the package's Apache-2.0 code runs without it.

:class:`OrbSlam3` wraps one monocular ORB-SLAM3 system with the guards ORB-SLAM3 needs
(saving trajectories from an empty map segfaults it; its keyframes are only known through a
saved TUM trajectory). :func:`paced_run` feeds frames at the pace of their stamps, as a camera
would: ORB-SLAM3's local mapper runs in its own thread, and frames fed faster than it maps
are lost. Run as ``python -m semseg_ros.slam.orbslam3 JOB.json RESULT.json``, it does one
paced run in a process of its own (ORB-SLAM3 prints much to stdout, keeps state in
singletons and can crash the process: one run, one process).
"""

import json
import math
import os
from pathlib import Path
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

try:
    import pyorbslam3
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError('ORB-SLAM3 is an optional part of semseg_ros: install it with '
                      "`pip install '.[slam]'` (pyorbslam3, GPL-3.0); "
                      f'importing pyorbslam3 failed: {error}') from error

PathLike = Union[str, Path]
LICENSE = 'GPL-3.0-only (ORB-SLAM3 and pyorbslam3)'
# States in which ORB-SLAM3 has a pose for the frame it was given.
TRACKED_STATES = ('OK', 'OK_KLT')
STATES = tuple(pyorbslam3.TrackingState.__members__)


def version() -> str:
    """Return the installed pyorbslam3 version."""
    from importlib.metadata import version as package_version
    return package_version('pyorbslam3')


class OrbSlam3:
    """A monocular ORB-SLAM3 system, without viewer.

    Args:
        vocabulary: DBoW2 text vocabulary (ORBvoc.txt or one built by
            :mod:`semseg_ros.slam.vocabulary`).
        settings: ORB-SLAM3 settings YAML (:mod:`semseg_ros.slam.settings` writes one).

    Raises:
        FileNotFoundError: A file is missing.
        RuntimeError: ORB-SLAM3 refused the files.
    """

    def __init__(self, vocabulary: PathLike, settings: PathLike):
        """Load the vocabulary and start ORB-SLAM3's threads."""
        self._slam = pyorbslam3.Slam(vocab_file=str(vocabulary), settings_file=str(settings),
                                     sensor=pyorbslam3.Sensor.MONOCULAR, use_viewer=False)
        self.frames_tracked = 0
        self._closed = False

    def track(self, image: np.ndarray, stamp: float) -> Dict[str, Any]:
        """Track one ``H x W x 3`` RGB (or ``H x W`` mono) uint8 frame stamped in seconds.

        Returns:
            ``state`` (a TrackingState name), ``tracked`` (whether a pose came out),
            ``points`` (map points tracked in the frame) and ``pose_wc`` (4x4 camera-in-world
            matrix, or None).
        """
        result = self._slam.track_monocular(np.ascontiguousarray(image), float(stamp))
        state = result.state.name
        tracked = state in TRACKED_STATES
        self.frames_tracked += tracked
        return {'state': state, 'tracked': tracked, 'points': int(result.num_tracked_points),
                'pose_wc': np.asarray(result.pose_wc) if result.pose_valid else None}

    def keyframe_stamps(self) -> List[float]:
        """Return the stamps (s) of the keyframes in ORB-SLAM3's map, ascending.

        Read from a keyframe trajectory saved to a temporary file; an empty list (no save)
        while nothing was ever tracked, since ORB-SLAM3 crashes saving an empty map.
        """
        if self.frames_tracked == 0:
            return []
        with tempfile.TemporaryDirectory(prefix='semseg_orbslam3_') as folder:
            path = os.path.join(folder, 'keyframes.txt')
            self._slam.save_keyframe_trajectory_tum(path)
            if not os.path.isfile(path):
                return []
            with open(path) as handle:
                return sorted(float(line.split()[0]) for line in handle if line.strip())

    def localisation_only(self, on: bool = True) -> None:
        """Stop (or resume) mapping: frames are then tracked against the map as it is."""
        if on:
            self._slam.activate_localization_mode()
        else:
            self._slam.deactivate_localization_mode()

    def reset(self) -> None:
        """Drop the map and start again (the next frames initialise a new one)."""
        self._slam.reset()
        self.frames_tracked = 0

    def shutdown(self) -> None:
        """Stop ORB-SLAM3's threads (once; later calls do nothing)."""
        if not self._closed:
            self._closed = True
            self._slam.shutdown()

    def __enter__(self) -> 'OrbSlam3':
        """Return the system (context manager)."""
        return self

    def __exit__(self, *exc) -> None:
        """Shut ORB-SLAM3 down."""
        self.shutdown()


def _wait_until(deadline: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``deadline``."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def paced_run(vocabulary: PathLike, settings: PathLike, images: Sequence[np.ndarray],
              stamps: Sequence[float], indices: Sequence[int],
              localise: Optional[Sequence[np.ndarray]] = None,
              settle_s: float = 1.0) -> Dict[str, Any]:
    """Feed frames to a fresh ORB-SLAM3 at the pace of their stamps; report what it did.

    Args:
        vocabulary: The vocabulary file.
        settings: The settings file.
        images: The frames to map, in order (RGB uint8).
        stamps: Their stamps in seconds (ascending); frame ``i`` is fed ``stamps[i] -
            stamps[0]`` seconds after the first.
        indices: Each frame's index in its sequence (reported in ``initialised_at``).
        localise: Frames to localise afterwards against the map (:func:`localise_all`;
            usually every frame of the sequence), or None.
        settle_s: Seconds given to the local mapper after the last mapping frame.

    Returns:
        ``initialised_at`` (sequence index of the first tracked frame, or None), ``tracked``
        (mapping frames tracked), ``states`` (each mapping frame's state), ``points`` (mean
        map points tracked per tracked frame), ``keyframe_stamps`` (ORB-SLAM3's keyframes
        after mapping), ``localised`` (fraction of the localisation frames tracked, or None),
        ``late_s`` (how late the last frame was fed: pacing held if small).
    """
    if len(images) != len(stamps) or len(images) != len(indices):
        raise ValueError('images, stamps and indices must have the same length')
    result: Dict[str, Any] = {'initialised_at': None, 'tracked': 0, 'states': [],
                              'points': 0.0, 'keyframe_stamps': [], 'localised': None,
                              'late_s': 0.0}
    with OrbSlam3(vocabulary, settings) as slam:
        points = []
        start = time.monotonic()
        for image, stamp, index in zip(images, stamps, indices):
            _wait_until(start + stamp - stamps[0])
            result['late_s'] = max(result['late_s'],
                                   time.monotonic() - start - (stamp - stamps[0]))
            outcome = slam.track(image, stamp)
            result['states'].append(outcome['state'])
            if outcome['tracked']:
                points.append(outcome['points'])
                if result['initialised_at'] is None:
                    result['initialised_at'] = int(index)
        result['tracked'] = len(points)
        result['points'] = float(np.mean(points)) if points else 0.0
        time.sleep(settle_s)
        result['keyframe_stamps'] = slam.keyframe_stamps()
        if localise is not None:
            result['localised'] = 0.0
            if result['tracked'] and result['keyframe_stamps'] and len(localise):
                result['localised'] = localise_all(slam, localise, stamps[-1] + 1.0)
    return result


# Stamp step of the localisation pass: small, so that frames failing in a row never reach the
# 3 s after which a lost monocular ORB-SLAM3 starts a new map (which would drop the map).
_LOCALISE_STEP_S = 0.002


def localise_all(slam: OrbSlam3, images: Sequence[np.ndarray], stamp: float) -> float:
    """Return the fraction of ``images`` that ORB-SLAM3 localises against its map.

    In localisation-only mode ORB-SLAM3 never relocalises once it has lost track (it stays
    RECENTLY_LOST and tries its motion model), and in mapping mode it relocalises but also
    maps. So each frame is tracked in localisation-only mode while tracking holds; after a
    failure the next frame is tried in mapping mode, where a lost ORB-SLAM3 relocalises (a
    black frame first makes it lost, so that the first frame relocalises too); once it is
    tracked, localisation-only mode resumes. Stamps advance by 2 ms a frame from ``stamp``.
    """
    slam.track(np.zeros_like(images[0]), stamp)  # nothing to track: lost, map kept
    localising, hits = False, 0
    for image in images:
        stamp += _LOCALISE_STEP_S
        tracked = slam.track(image, stamp)['tracked']
        hits += tracked
        if tracked != localising:  # takes effect from the next frame on
            slam.localisation_only(tracked)
            localising = tracked
    return hits / len(images)


def run_job(job: Dict[str, Any]) -> Dict[str, Any]:
    """Do one paced run described by a JSON job (image paths instead of images)."""
    import cv2

    def read(paths):
        images = []
        for path in paths:
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f'{path}: cannot read the image')
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return images

    localise = job.get('localise')
    return paced_run(job['vocabulary'], job['settings'], read(job['images']), job['stamps'],
                     job['indices'], read(localise) if localise else None,
                     job.get('settle_s', 1.0))


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m semseg_ros.slam.orbslam3 JOB.json RESULT.json``: one paced run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print('usage: python -m semseg_ros.slam.orbslam3 JOB.json RESULT.json', file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    result = run_job(job)
    result = {k: (None if isinstance(v, float) and math.isnan(v) else v)
              for k, v in result.items()}
    tmp = Path(argv[1]).with_suffix('.part')
    tmp.write_text(json.dumps(result))
    tmp.replace(argv[1])
    return 0


if __name__ == '__main__':
    sys.exit(main())
