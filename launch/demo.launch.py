"""
Out-of-the-box demo: the bundled sample images -> monoport_node -> RViz.

``ros2 launch monoport_ros demo.launch.py`` streams the package's sample images with
``image_publisher``, reconstructs them and shows the coloured point cloud, the mesh marker and the
rendered front view in RViz (``config/monoport.rviz``). A static transform places the images'
optical frame under a z-up ``camera_link`` so that the person stands upright in RViz (where
``tf2_ros`` is not installed, e.g. with pip-installed ROS 2 wheels, the demo says so and runs
without it).
"""
import os

from ament_index_python.packages import get_package_share_directory, PackageNotFoundError
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, LogInfo
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'monoport_ros'
IMAGE_TOPIC = '/camera/image_raw'
CAMERA_INFO_TOPIC = '/camera/camera_info'
OPTICAL_FRAME = 'camera_optical_frame'


def _installed(package: str) -> bool:
    try:
        get_package_share_directory(package)
    except PackageNotFoundError:
        return False
    return True


def generate_launch_description() -> LaunchDescription:
    """Image source, static camera transform, node (with RViz)."""
    share = get_package_share_directory(PACKAGE)
    rate = LaunchConfiguration('rate')
    source = Node(
        package=PACKAGE,
        executable='image_publisher',
        name='image_publisher',
        arguments=['--rate', rate, '--frame-id', OPTICAL_FRAME],
        remappings=[('image', IMAGE_TOPIC), ('camera_info', CAMERA_INFO_TOPIC)],
        output='screen',
    )
    # camera_link (x forward, y left, z up) -> optical frame (z forward, x right, y down)
    camera_tf = LogInfo(msg='tf2_ros is not installed: no camera_link transform')
    if _installed('tf2_ros'):
        camera_tf = Node(
            package='tf2_ros',
            executable='static_transform_publisher',
            name='camera_optical_tf',
            arguments=['--roll', '-1.5707963', '--pitch', '0', '--yaw', '-1.5707963',
                       '--frame-id', 'camera_link', '--child-frame-id', OPTICAL_FRAME],
        )
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'monoport.launch.py')),
        launch_arguments={
            'image_topic': IMAGE_TOPIC,
            'camera_info_topic': CAMERA_INFO_TOPIC,
            'use_rviz': LaunchConfiguration('use_rviz'),
            'geometry_device': LaunchConfiguration('geometry_device'),
            'color_device': LaunchConfiguration('color_device'),
            # image_publisher is reliable; a best-effort reader can lose large images
            'image_reliability': 'reliable',
            # a slideshow of unrelated images, not one camera stream: segment each on its own
            'segmentation_tracking': 'false',
        }.items(),
    )
    return LaunchDescription([
        DeclareLaunchArgument('rate', default_value='2.0', description='images per second'),
        DeclareLaunchArgument('use_rviz', default_value='true', description='start RViz'),
        DeclareLaunchArgument('geometry_device', default_value='',
                              description='torch device of the surface stage (empty: cpu)'),
        DeclareLaunchArgument('color_device', default_value='',
                              description='torch device of the colour stage (empty: cpu)'),
        source,
        camera_tf,
        node,
    ])
