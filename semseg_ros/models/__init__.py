"""Segmentation networks and their registry.

One import line per model file registers its constructors.
"""

from semseg_ros.models.registry import (  # noqa: F401
    check_input_size, check_multiple, create_model, list_models, model_info, ModelInfo,
    register_model)

# Model files: importing one registers its constructors.
from semseg_ros.models import enet  # noqa: F401,E402,I100
from semseg_ros.models import mininet_v2  # noqa: F401,E402,I100
from semseg_ros.models import rds_net  # noqa: F401,E402,I100
