"""Fast DDS set-up for camera images between processes on one machine.

Fast DDS passes a sample through shared memory only if it fits the segment (0.5 MB by
default); a 640x480 rgb8 frame (0.9 MB) otherwise goes out as UDP fragments, which a busy
machine loses under best-effort QoS and pays for in latency under reliable QoS. The package's
profile (``config/fastdds_large_images.xml``) enlarges the segment; the tools that start
nodes and publish camera images (``semseg bench --node``, ``semseg bag replay``, the demo)
use it unless ``FASTDDS_DEFAULT_PROFILES_FILE`` already names another.
"""

import contextlib
import os
from typing import Dict, Iterator, Mapping, Optional

from semseg_ros.core.resources import config_dir

PROFILE_VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'


def profile_file() -> str:
    """Return the Fast DDS profile to use: the user's, else the package's."""
    return os.environ.get(PROFILE_VARIABLE) or str(config_dir() / 'fastdds_large_images.xml')


def node_environment(base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Return an environment for a node process: ``base`` (default: ours) plus the profile."""
    return dict(os.environ if base is None else base, **{PROFILE_VARIABLE: profile_file()})


@contextlib.contextmanager
def large_image_profile() -> Iterator[str]:
    """Set the profile for the participants created inside the block; restore it after.

    Fast DDS reads the variable when a participant is created (``rclpy.init`` with a new
    context), so only those created inside use it; the caller's environment is left as it was.
    """
    given = os.environ.get(PROFILE_VARIABLE)
    os.environ[PROFILE_VARIABLE] = profile_file()
    try:
        yield os.environ[PROFILE_VARIABLE]
    finally:
        if given is None:
            del os.environ[PROFILE_VARIABLE]
        else:
            os.environ[PROFILE_VARIABLE] = given
