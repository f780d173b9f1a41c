"""Launch the segmentation node and the keyframe node together, wired for a SLAM front end.

    ros2 launch semseg_ros slam_keyframes.launch.py image_topic:=/camera/image_raw
    ros2 launch semseg_ros slam_keyframes.launch.py single_process:=true use_confidence:=true
    ros2 launch semseg_ros slam_keyframes.launch.py namespace:=front \\
        keyframe_config:=/path/to/my_keyframes.yaml

The keyframe node reads the segmentation node's ~/label_mask (and ~/confidence), and the
camera itself for the image-quality terms; it publishes ~/scores, ~/keyframe,
~/keyframe_image and ~/dynamic_mask. With single_process:=true both nodes run in one process
on one executor (the keyframe_pipeline executable; rclpy has no composable
nodes), so masks and images do not cross DDS.

With slam:=true an ORB-SLAM3 node (the optional ``[slam]`` extra: pyorbslam3, GPL-3.0) maps
the keyframe node's ~/keyframe_image with the intrinsics of camera_info_topic, and publishes
the camera pose (orbslam3_node/pose), the path (orbslam3_node/path) and its tracking state on
/diagnostics:

    ros2 launch semseg_ros slam_keyframes.launch.py image_topic:=/camera/image_raw \\
        slam:=true camera_info_topic:=/camera/camera_info slam_vocabulary:=/path/ORBvoc.txt

Stop it with Ctrl-C (SIGINT): a SIGTERM to ``ros2 launch`` leaves the nodes running
(ros2/launch#666).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from semseg_ros.nodes.launch_arguments import (flag, optional_file, parameters_file,
                                               PLAIN_LOG_ENV)

PACKAGE = 'semseg_ros'
SEGMENTATION_NODE = 'segmentation_node'
KEYFRAME_NODE = 'keyframe_node'
ORBSLAM3_NODE = 'orbslam3_node'
MAPPING_PROFILE = '/config/keyframes_mapping.yaml'

ARGUMENTS = (
    ('image_topic', '/camera/image_raw',
     'Camera image topic (sensor_msgs/Image); both nodes read it.'),
    ('namespace', '', 'Namespace of both nodes and their output topics.'),
    ('model', '',
     'Segmentation network (mininet_v2_cpu, mininet_v2, enet, rds_net); empty: the one in '
     'segmentation_config.'),
    ('segmentation_config', 'cpu_robot.yaml',
     'Parameters file of the segmentation node: a name in the installed config/ '
     '(cpu_robot.yaml, jetson_enet.yaml, jetson_rdsnet.yaml, gpu_mininet_v2.yaml) or a path '
     'to your own; a missing file stops the launch.'),
    ('keyframe_config', '',
     'Keyframe configuration in config/keyframes.yaml format (scoring weights, gaps, '
     'window); empty: the shipped one (keyframes.yaml, the place-memory profile; with '
     'slam:=true keyframes_mapping.yaml, the mapping profile).'),
    ('use_image', 'true',
     'true: the keyframe node also reads the camera (visual-overlap keyframes, sharpness and '
     'exposure terms, ~/keyframe_image); false: label masks only (score-window rule).'),
    ('use_confidence', 'false',
     'true: the segmentation node publishes ~/confidence and the keyframe node weights the '
     'semantic coverage by it.'),
    ('single_process', 'false',
     'true: run both nodes in one process (keyframe_pipeline); '
     'false: two processes.'),
    ('slam', 'false',
     'true: also run ORB-SLAM3 (orbslam3_node, the optional [slam] extra, GPL-3.0) on the '
     "keyframe node's ~/keyframe_image: camera pose, path and tracking state."),
    ('camera_info_topic', '/camera/camera_info',
     "With slam:=true: the camera's sensor_msgs/CameraInfo topic (ORB-SLAM3's intrinsics)."),
    ('slam_mask_dynamic', 'true',
     'With slam:=true: paint the dynamic classes (segmentation label mask) out of the frames '
     'ORB-SLAM3 sees (measured in docs/orbslam2.md: earlier initialisation, more frames '
     'tracked).'),
    ('slam_vocabulary', '',
     'With slam:=true: ORB vocabulary file (ORBvoc.txt); empty: $PYORBSLAM3_VOCAB, else one '
     "built from the package's sample frames (to try it only)."),
)


def _flag(context, name: str) -> bool:
    """Return a true/false launch argument as a bool, refusing anything else."""
    return flag(LaunchConfiguration(name).perform(context), name)


def _nodes(context):
    """Build the node actions from the resolved arguments."""
    image_topic = LaunchConfiguration('image_topic')
    namespace = LaunchConfiguration('namespace')
    model = LaunchConfiguration('model').perform(context).strip()
    use_confidence = _flag(context, 'use_confidence')
    config = parameters_file(LaunchConfiguration('segmentation_config').perform(context),
                             FindPackageShare(PACKAGE).perform(context) + '/config',
                             'segmentation_config')
    segmentation = {'publish_confidence': use_confidence, 'output_resolution': 'input'}
    if model:
        segmentation['model'] = model
    keyframe_config = optional_file(LaunchConfiguration('keyframe_config').perform(context),
                                    'keyframe_config')
    if not keyframe_config and _flag(context, 'slam'):
        # ORB-SLAM3 maps the keyframe stream: the mapping profile (docs/orbslam2.md).
        keyframe_config = FindPackageShare(PACKAGE).perform(context) + MAPPING_PROFILE
    keyframe = {'config_file': keyframe_config, 'use_image': _flag(context, 'use_image'),
                'use_confidence': use_confidence}
    if not keyframe['use_image']:
        keyframe['min_shared_features'] = 0  # the visual overlap needs the camera images
    nodes = _segmentation_and_keyframes(context, image_topic, namespace, config, segmentation,
                                        keyframe)
    if _flag(context, 'slam'):
        vocabulary = optional_file(LaunchConfiguration('slam_vocabulary').perform(context),
                                   'slam_vocabulary')
        nodes.append(Node(
            package=PACKAGE, executable='orbslam3_node', name=ORBSLAM3_NODE,
            namespace=namespace,
            parameters=[{'vocabulary': vocabulary,
                         'mask_dynamic': _flag(context, 'slam_mask_dynamic')}],
            remappings=[('image', f'{KEYFRAME_NODE}/keyframe_image'),
                        ('camera_info', LaunchConfiguration('camera_info_topic')),
                        ('label_mask', f'{SEGMENTATION_NODE}/label_mask')],
            output='screen', additional_env=PLAIN_LOG_ENV))
    return nodes


def _segmentation_and_keyframes(context, image_topic, namespace, config, segmentation,
                                keyframe):
    """Return the segmentation and keyframe node actions (one process or two)."""
    if _flag(context, 'single_process'):
        # No name: `-r __node:=` would rename both nodes of the process. Dict parameters of an
        # unnamed node go to `/**`, which both nodes read (each only declares its own).
        return [Node(
            package=PACKAGE, executable='keyframe_pipeline', namespace=namespace,
            parameters=[config, {**segmentation, **keyframe}],
            remappings=[('image', image_topic)], output='screen',
            additional_env=PLAIN_LOG_ENV)]
    return [
        Node(package=PACKAGE, executable='segmentation_node', name=SEGMENTATION_NODE,
             namespace=namespace,
             # Later entries win: the launch arguments override the parameters file.
             parameters=[config, segmentation],
             remappings=[('image', image_topic)], output='screen',
             additional_env=PLAIN_LOG_ENV),
        Node(package=PACKAGE, executable='keyframe_node', name=KEYFRAME_NODE,
             namespace=namespace, parameters=[keyframe],
             remappings=[('label_mask', f'{SEGMENTATION_NODE}/label_mask'),
                         ('confidence', f'{SEGMENTATION_NODE}/confidence'),
                         ('image', image_topic)],
             output='screen', additional_env=PLAIN_LOG_ENV),
    ]


def generate_launch_description():
    """Declare the arguments and start the nodes (two processes or one; ORB-SLAM3 too)."""
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=description)
          for name, default, description in ARGUMENTS),
        OpaqueFunction(function=_nodes),
    ])
