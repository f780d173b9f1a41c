"""Launch the semseg_ros segmentation node with a platform parameters file.

    ros2 launch semseg_ros segmentation.launch.py image_topic:=/camera/image_raw
    ros2 launch semseg_ros segmentation.launch.py config:=jetson_enet.yaml
    ros2 launch semseg_ros segmentation.launch.py config:=/path/to/my_robot.yaml
    ros2 launch semseg_ros segmentation.launch.py model:=mininet_v2 namespace:=front \\
        use_compressed:=true

Stop it with Ctrl-C (SIGINT): a SIGTERM to ``ros2 launch`` leaves the node running
(ros2/launch#666).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from semseg_ros.nodes.launch_arguments import flag, parameters_file, PLAIN_LOG_ENV

PACKAGE = 'semseg_ros'

ARGUMENTS = (
    ('model', '',
     'Segmentation network (mininet_v2_cpu, mininet_v2, enet, rds_net); empty: the one in '
     'the config file.'),
    ('config', 'cpu_robot.yaml',
     'Parameters file of the node: a name in the installed config/ (cpu_robot.yaml, '
     'jetson_enet.yaml, jetson_rdsnet.yaml, gpu_mininet_v2.yaml) or a path to your own; '
     'a missing file stops the launch.'),
    ('image_topic', '/camera/image_raw',
     'Camera image topic (sensor_msgs/Image); with use_compressed, its /compressed '
     'sub-topic is read.'),
    ('namespace', '', 'Namespace of the node and its output topics.'),
    ('use_compressed', 'false',
     'true: subscribe to <image_topic>/compressed (sensor_msgs/CompressedImage, jpeg or '
     'png) instead of the raw images.'),
)


def _segmentation_node(context):
    """Build the node from the resolved arguments (an empty model keeps the config's)."""
    model = LaunchConfiguration('model').perform(context).strip()
    compressed = flag(LaunchConfiguration('use_compressed').perform(context), 'use_compressed')
    config = parameters_file(LaunchConfiguration('config').perform(context),
                             FindPackageShare(PACKAGE).perform(context) + '/config', 'config')
    overrides = {'input_transport': 'compressed' if compressed else 'raw'}
    if model:
        overrides['model'] = model
    return [Node(
        package=PACKAGE,
        executable='segmentation_node',
        name='segmentation_node',
        namespace=LaunchConfiguration('namespace'),
        # Later entries win: the launch arguments override the parameters file.
        parameters=[config, overrides],
        remappings=[('image', LaunchConfiguration('image_topic'))],
        output='screen',
        additional_env=PLAIN_LOG_ENV,
    )]


def generate_launch_description():
    """Declare the arguments and start one segmentation node."""
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=description)
          for name, default, description in ARGUMENTS),
        OpaqueFunction(function=_segmentation_node),
    ])
