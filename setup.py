"""ament_python package definition for monoport_ros (sources under src/)."""
from glob import glob

from setuptools import find_packages, setup

package_name = 'monoport_ros'

setup(
    name=package_name,
    version='0.1.0',
    package_dir={'': 'src'},
    packages=find_packages('src'),
    package_data={package_name: ['models/*.safetensors', 'models/*.md',
                                 'samples/*.png', 'samples/*.json']},
    include_package_data=True,
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.rviz')),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='monoport_ros developers',
    maintainer_email='monoport-ros@example.org',
    description='Real-time monocular clothed-human reconstruction (MonoPort/PIFu) for ROS 2.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'monoport-ros = monoport_ros.cli:main',
            'monoport_node = monoport_ros.ros.node:main',
            'image_publisher = monoport_ros.ros.image_publisher:main',
        ],
    },
)
