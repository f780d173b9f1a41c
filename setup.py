"""ament_python set-up of semseg_ros."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'semseg_ros'


def _tree(folder):
    """Return data_files entries installing folder/ under share/<package>/folder."""
    entries = []
    for root, _dirs, files in os.walk(folder):
        if files:
            entries.append((os.path.join('share', PACKAGE, root),
                            [os.path.join(root, f) for f in files]))
    return entries


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={PACKAGE: ['weights/*.pt', 'weights/*.md',
                            'weights/*.png', 'data/samples/**/*']},
    include_package_data=True,
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml', 'LICENSE']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
    ] + _tree('config'),
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='semseg_ros developers',
    maintainer_email='semseg-ros@example.org',
    description='Real-time semantic segmentation and semantic keyframe selection for ROS 2.',
    license='Apache-2.0',
    # colcon test runs pytest for packages that declare it here (not in tests_require).
    # slam: ORB-SLAM3 in the loop (semseg slam, the orbslam3_node). pyorbslam3 bundles ORB-SLAM3,
    # Pangolin and a private OpenCV under GPL-3.0; only semseg_ros/slam/orbslam3.py imports it.
    extras_require={'test': ['pytest'], 'slam': ['pyorbslam3==0.1.1']},
    entry_points={
        'console_scripts': [
            'semseg = semseg_ros.cli:main',
            'segmentation_node = semseg_ros.nodes.segmentation_node:main',
            'keyframe_node = semseg_ros.nodes.keyframe_node:main',
            'keyframe_pipeline = semseg_ros.nodes.pipeline:main',
            'orbslam3_node = semseg_ros.nodes.orbslam3_node:main',
        ],
    },
)
