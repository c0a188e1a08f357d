"""
Launch monoport_node on a camera topic, optionally with RViz.

``ros2 launch monoport_ros monoport.launch.py image_topic:=/camera/image_raw use_rviz:=true``

Node parameters come from ``params_file`` (default: the installed ``config/monoport.yaml``); the
launch arguments named like a parameter (resolution, octree_depth, geometry_device, color_device,
precision, mirror_average, shift_average, surface_smoothing, checkpoint, image_reliability,
segmentation_tracking) override it when given a non-empty value.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
import yaml

PACKAGE = 'monoport_ros'
NODE_NAME = 'monoport_node'
# Launch arguments that set the node parameter of the same name (value type of the parameter).
PARAMETER_ARGUMENTS = {
    'resolution': int,
    'octree_depth': int,
    'geometry_device': str,
    'color_device': str,
    'precision': str,
    'mirror_average': bool,
    'shift_average': bool,
    'surface_smoothing': float,
    'checkpoint': str,
    'image_reliability': str,
    'segmentation_tracking': bool,
}
ARGUMENTS = [
    ('image_topic', '/camera/image_raw', 'sensor_msgs/Image topic to reconstruct'),
    ('camera_info_topic', '/camera/camera_info', 'sensor_msgs/CameraInfo of the image topic'),
    ('resolution', '', 'grid resolution per axis, a power of two (empty: from params_file)'),
    ('octree_depth', '', 'coarse-to-fine surface localization levels (empty: from params_file)'),
    ('geometry_device', '', 'torch device of the surface stage, e.g. cuda:0 (empty: params_file)'),
    ('color_device', '', 'torch device of the colour/render stage (empty: from params_file)'),
    ('precision', '', 'network arithmetic: auto, float32, bfloat16, float16 (empty: params_file)'),
    ('mirror_average', '', 'true: average with the mirrored crop, more accurate, free on a GPU '
     '(empty: from params_file)'),
    ('shift_average', '', 'true: also average over the crop moved a few pixels, more accurate, '
     'free on a GPU, 5x the surface stage on a CPU (empty: from params_file)'),
    ('surface_smoothing', '', 'Gaussian smoothing of the occupancy, sigma in 256^3 voxels, 0.0 = '
     'off: smoother surfaces, slightly thinner limbs (empty: from params_file)'),
    ('checkpoint', '', 'model file (empty: from params_file; there empty = shipped model)'),
    ('image_reliability', '', 'image QoS: best_effort or reliable (empty: from params_file)'),
    ('segmentation_tracking', '', 'true: one camera stream (tracked segmentation); false: '
     'unrelated images (empty: from params_file)'),
    ('params_file', os.path.join('<share>', 'config', 'monoport.yaml'),
     'YAML file with the monoport_node parameters'),
    ('namespace', '', 'namespace of the node'),
    ('use_rviz', 'false', 'also start RViz with config/monoport.rviz'),
]


def _share() -> str:
    return get_package_share_directory(PACKAGE)


def _file_parameters(path: str, namespace: str) -> dict:
    """ros__parameters of this node in a params file (plain, wildcard or namespaced key)."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    ns = '/' + namespace.strip('/') if namespace.strip('/') else ''
    keys = ('/**', '**', NODE_NAME, '/' + NODE_NAME, f'{ns}/{NODE_NAME}', f'{ns}/{NODE_NAME}'[1:])
    params = {}
    for key in keys:
        section = data.get(key)
        if isinstance(section, dict):
            params.update(section.get('ros__parameters', {}))
    return params


def parameter_value(cast: type, text: str):
    """Launch-argument text as a parameter value of type ``cast`` (bool: true/false only)."""
    if cast is bool:
        if text.lower() not in ('true', 'false'):
            raise ValueError(f'expected true or false, got {text!r}')
        return text.lower() == 'true'
    return cast(text)


def _launch_node(context, *args, **kwargs):
    namespace = LaunchConfiguration('namespace').perform(context)
    params = _file_parameters(LaunchConfiguration('params_file').perform(context), namespace)
    for name, cast in PARAMETER_ARGUMENTS.items():
        value = LaunchConfiguration(name).perform(context)
        if value != '':
            params[name] = parameter_value(cast, value)
    return [Node(
        package=PACKAGE,
        executable=NODE_NAME,
        name=NODE_NAME,
        namespace=namespace,
        output='screen',
        parameters=[params],
        remappings=[('image', LaunchConfiguration('image_topic')),
                    ('camera_info', LaunchConfiguration('camera_info_topic'))],
    )]


def generate_launch_description():
    """Launch arguments, the node and (use_rviz) RViz."""
    share = _share()
    actions = []
    for name, default, description in ARGUMENTS:
        default = default.replace('<share>', share)
        actions.append(DeclareLaunchArgument(name, default_value=default,
                                             description=description))
    actions.append(OpaqueFunction(function=_launch_node))
    actions.append(Node(
        package='rviz2',
        executable='rviz2',
        name='rviz2',
        arguments=['-d', os.path.join(share, 'config', 'monoport.rviz')],
        condition=IfCondition(LaunchConfiguration('use_rviz')),
    ))
    return LaunchDescription(actions)
