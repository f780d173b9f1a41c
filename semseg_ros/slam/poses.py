"""Camera poses from ORB-SLAM3 as ROS poses: a 4x4 matrix to position and unit quaternion."""

from typing import Tuple

import numpy as np


Position = Tuple[float, float, float]
Quaternion = Tuple[float, float, float, float]


def matrix_to_pose(matrix: np.ndarray) -> Tuple[Position, Quaternion]:
    """Return ``((x, y, z), (qx, qy, qz, qw))`` of a 4x4 rigid transform (camera in world).

    The quaternion has ``qw >= 0``; the rotation part is taken as it is (ORB-SLAM3's are
    orthonormal to float precision).

    Raises:
        ValueError: Not a 4x4 matrix of finite values.
    """
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise ValueError(f'a pose must be a finite 4x4 matrix, got shape {matrix.shape}')
    r = matrix[:3, :3]
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = (0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s)
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = ((r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s)
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = ((r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s)
    else:
        s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = ((r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s)
    w, x, y, z = q
    norm = np.sqrt(w * w + x * x + y * y + z * z)
    sign = 1.0 if w >= 0 else -1.0
    w, x, y, z = (sign * v / norm for v in (w, x, y, z))
    t = matrix[:3, 3]
    return (float(t[0]), float(t[1]), float(t[2])), (float(x), float(y), float(z), float(w))
