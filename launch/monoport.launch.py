"""
Launch monoport_node on a camera topic, optionally with RViz.

``ros2 launch monoport_ros monoport.launch.py image_topic:=/camera/image_raw use_rviz:=true``

Node parameters come from ``params_file`` (default: the installed ``config/monoport.yaml``, which
holds the defaults). Every node parameter is also a launch argument of the same name, made from
the fields of ``MonoPortConfig`` (``--show-args`` lists them with their descriptions); one given
a non-empty value overrides the file: the node gets ``parameters=[params_file, overrides]`` and
launch_ros merges them (the later wins).
"""
import dataclasses
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from monoport_ros.core.config import field_from_text, MonoPortConfig

PACKAGE = 'monoport_ros'
NODE_NAME = 'monoport_node'
# Launch arguments that are not node parameters: (name, default, description).
OTHER_ARGUMENTS = [
    ('image_topic', '/camera/image_raw', 'sensor_msgs/Image topic to reconstruct'),
    ('camera_info_topic', '/camera/camera_info', 'sensor_msgs/CameraInfo of the image topic'),
    ('depth_topic', '', 'sensor_msgs/Image depth registered to the image (16UC1 mm or 32FC1 m), '
     'e.g. /camera/aligned_depth_to_color/image_raw; empty: the node\'s own depth topic'),
    ('params_file', os.path.join('<share>', 'config', 'monoport.yaml'),
     'YAML file with the monoport_node parameters'),
    ('namespace', '', 'namespace of the node'),
    ('use_rviz', 'false', 'also start RViz with config/monoport.rviz'),
]


def parameter_arguments() -> list[DeclareLaunchArgument]:
    """One launch argument per MonoPortConfig field (empty default: the params file's value)."""
    defaults = MonoPortConfig()
    arguments = []
    for f in dataclasses.fields(MonoPortConfig):
        default = getattr(defaults, f.name)
        shown = ','.join(default) if isinstance(default, list) else str(default).lower() \
            if isinstance(default, bool) else str(default)
        arguments.append(DeclareLaunchArgument(
            f.name, default_value='',
            description=f"{f.metadata['description']}. Empty: the params_file value "
                        f'(shipped: {shown or "empty"})'))
    return arguments


def parameter_overrides(context) -> dict:
    """Return the node parameters given as non-empty launch arguments, typed as their fields."""
    overrides = {}
    for f in dataclasses.fields(MonoPortConfig):
        text = LaunchConfiguration(f.name).perform(context)
        if text != '':
            value = field_from_text(f.name, text)
            if value == []:
                # launch_ros cannot pass an empty list (it takes the type from the first item)
                raise ValueError(f'{f.name}: an empty list cannot be a launch argument; '
                                 f'put "{f.name}: []" in a params_file')
            overrides[f.name] = value
    return overrides


def _launch_node(context, *args, **kwargs) -> list:
    overrides = parameter_overrides(context)
    parameters = [LaunchConfiguration('params_file').perform(context)]
    if overrides:
        parameters.append(overrides)
    remappings = [('image', LaunchConfiguration('image_topic')),
                  ('camera_info', LaunchConfiguration('camera_info_topic'))]
    depth = LaunchConfiguration('depth_topic').perform(context)
    if depth:
        remappings.append(('depth', depth))
    return [Node(
        package=PACKAGE,
        executable=NODE_NAME,
        name=NODE_NAME,
        namespace=LaunchConfiguration('namespace').perform(context),
        output='screen',
        # after Ctrl-C the worker processes take a few seconds to wind down (MediaPipe, torch):
        # more than launch's default 5 s before it escalates to SIGTERM, on a busy CPU
        sigterm_timeout='20',
        parameters=parameters,
        remappings=remappings,
    )]


def generate_launch_description() -> LaunchDescription:
    """Launch arguments, the node and (use_rviz) RViz."""
    share = get_package_share_directory(PACKAGE)
    actions = [DeclareLaunchArgument(name, default_value=default.replace('<share>', share),
                                     description=description)
               for name, default, description in OTHER_ARGUMENTS]
    actions += parameter_arguments()
    actions.append(OpaqueFunction(function=_launch_node))
    actions.append(Node(
        package='rviz2',
        executable='rviz2',
        name='rviz2',
        arguments=['-d', os.path.join(share, 'config', 'monoport.rviz')],
        condition=IfCondition(LaunchConfiguration('use_rviz')),
    ))
    return LaunchDescription(actions)
