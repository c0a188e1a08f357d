"""
Several people on the node's topics, over real DDS (issue 27).

The engine is a stand-in (:class:`FakePipeline`): the test hands the node a frame result of two
people, then one of the same first person alone, and reads every topic back from a probe node.
"""
from __future__ import annotations

import time

from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseArray
import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from fake_pipeline import FakePipeline
from ros_isolation import domain, NODE, ros_args

from monoport_ros.core.body_pose import BodyPose, LANDMARK_LINKS, MIN_VISIBILITY
from monoport_ros.core.camera import PersonCrop, PinholeCamera
from monoport_ros.core.frame_people import FrameResult
from monoport_ros.core.reconstruct import Reconstruction
from monoport_ros.ros import conversions as conv
from monoport_ros.ros.node import MonoPortNode

W, H = 64, 48
TOPICS = {'mesh_markers': MarkerArray, 'skeletons': MarkerArray, 'points': PointCloud2,
          'people': PointCloud2, 'joints': PoseArray, 'mesh_marker': Marker}


@pytest.fixture
def ctx():
    context = Context()
    rclpy.init(context=context, domain_id=domain(), args=ros_args())
    yield context
    rclpy.shutdown(context=context)


def _person(x0: int, seed: int) -> Reconstruction:
    """Make a small person whose mask starts at column ``x0``: mesh, points, landmarks."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((H, W), bool)
    mask[8:40, x0:x0 + 12] = True
    v = rng.uniform(-0.5, 0.5, (6, 3)).astype(np.float32)
    f = np.array([[0, 1, 2], [3, 4, 5]], np.int32)
    c = rng.uniform(0, 1, (6, 3)).astype(np.float32)
    crop = PersonCrop(x0 + 6.0, 24.0, 36.0)
    lm = np.zeros((33, 3), np.float32)
    lm[:, 0] = x0 + 6.0 + rng.uniform(-5, 5, 33)
    lm[:, 1] = rng.uniform(10, 38, 33)
    vis = np.ones(33, np.float32)
    vis[[0, 30]] = 0.1                      # two landmarks unseen
    return Reconstruction(True, mask, crop, 32.0, v, f, c, v, c, pose=BodyPose(lm, vis))


def _node_and_probe(ctx):
    """Return the node on a stubbed pipeline, a probe node, and an executor spinning both."""
    node = MonoPortNode(pipeline_factory=FakePipeline, context=ctx)
    probe = rclpy.create_node('people_probe', context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(probe)
    return node, probe, ex


def test_every_person_on_every_topic_and_a_delete_when_one_leaves(ctx):
    node, probe, ex = _node_and_probe(ctx)
    got: dict[str, list] = {t: [] for t in TOPICS}
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    for topic, typ in TOPICS.items():
        probe.create_subscription(typ, f'{NODE}/{topic}', got[topic].append, qos)
    try:
        pubs = (node.pub_markers, node.pub_skeletons, node.pub_points, node.pub_people,
                node.pub_joints, node.pub_marker)
        end = time.monotonic() + 10
        while not all(p.get_subscription_count() for p in pubs):
            ex.spin_once(timeout_sec=0.05)
            assert time.monotonic() < end
        a, b = _person(6, 0), _person(40, 1)
        for sec, people in ((7, [a, b]), (8, [a])):
            rgb = np.zeros((H, W, 3), np.uint8)
            node._on_image(conv.rgb_to_image(rgb, 'rgb8', Header(stamp=Time(sec=sec),
                                                                 frame_id='cam')))
            _, meta, outputs = node.pipeline.submitted[-1]
            assert {'points', 'mesh', 'skeletons'} <= outputs
            mask = np.logical_or.reduce([p.mask for p in people])
            node.pipeline.on_result(meta, FrameResult(people, mask), None)
        end = time.monotonic() + 10
        while not all(len(got[t]) >= 2 for t in TOPICS):
            ex.spin_once(timeout_sec=0.05)
            assert time.monotonic() < end, {t: len(m) for t, m in got.items()}

        # meshes: a TRIANGLE_LIST per person, ns person, id = track id (1, 2 in rank order)
        first, second = got['mesh_markers'][:2]
        assert first.markers[0].action == Marker.DELETEALL          # the node's first array
        adds = first.markers[1:]
        assert [(m.ns, m.id, m.type, m.action) for m in adds] == [
            ('person', 1, Marker.TRIANGLE_LIST, Marker.ADD),
            ('person', 2, Marker.TRIANGLE_LIST, Marker.ADD)]
        assert all(len(m.points) == 6 and m.header.frame_id == 'cam' for m in adds)
        assert [(m.ns, m.id, m.action) for m in second.markers] == [
            ('person', 1, Marker.ADD), ('person', 2, Marker.DELETE)]    # b has left
        # the single-person marker is the first-ranked person's, at the same place
        single = got['mesh_marker'][0]
        np.testing.assert_allclose([[p.x, p.y, p.z] for p in single.points],
                                   [[p.x, p.y, p.z] for p in adds[0].points])

        # points: both people, with their track id in the person field
        cloud = got['points'][0]
        assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb', 'person']
        ids = np.frombuffer(bytes(cloud.data), np.uint8).reshape(-1, 20)[:, 16:20]
        assert sorted(set(ids.copy().view('<u4').ravel().tolist())) == [1, 2]
        assert got['points'][1].width == 6                          # a alone

        # people: a row per person, position in front of the camera, the mask box, the id
        table = got['people'][0]
        assert table.width == 2 and table.point_step == conv.PERSON_ROW_DTYPE.itemsize
        rows = np.frombuffer(bytes(table.data), conv.PERSON_ROW_DTYPE)
        assert rows['person'].tolist() == [1, 2]
        assert rows['box_x0'].tolist() == [6, 40] and rows['box_y1'].tolist() == [40, 40]
        assert (rows['z'] > 0).all() and (rows['size_y'] > 0).all()
        assert rows['x'][0] < rows['x'][1]            # a stands left of b, as in the image
        assert got['people'][1].width == 1

        # skeletons: landmarks and links per person; DELETE of both when b leaves
        sk = got['skeletons'][0].markers
        assert sk[0].action == Marker.DELETEALL
        kinds = [(m.ns, m.id, m.type) for m in sk[1:]]
        assert kinds == [('skeleton', 1, Marker.SPHERE_LIST), ('bones', 1, Marker.LINE_LIST),
                         ('skeleton', 2, Marker.SPHERE_LIST), ('bones', 2, Marker.LINE_LIST)]
        seen = a.pose.visibility >= MIN_VISIBILITY
        assert len(sk[1].points) == seen.sum() == 31
        links = [k for k in LANDMARK_LINKS if seen[k[0]] and seen[k[1]]]
        assert len(sk[2].points) == 2 * len(links)
        gone = [(m.ns, m.id, m.action) for m in got['skeletons'][1].markers
                if m.action == Marker.DELETE]
        assert gone == [('skeleton', 2, Marker.DELETE), ('bones', 2, Marker.DELETE)]

        # joints: 33 per person in BlazePose's order, NaN where unseen, placed like the mesh
        joints = got['joints'][0]
        assert len(joints.poses) == 66 and joints.header.stamp.sec == 7
        xyz = np.array([[p.position.x, p.position.y, p.position.z] for p in joints.poses])
        assert np.isnan(xyz[[0, 30, 33, 63]]).all() and np.isfinite(xyz[1:30]).all()
        cam = PinholeCamera.default_for(W, H)
        place = cam.weak_perspective(a.crop, cam.subject_distance(32.0, 1.7))
        want = place.apply(a.pose.to_model(a.crop)[:, :3])
        np.testing.assert_allclose(xyz[1:30], want[1:30], rtol=1e-4, atol=1e-5)
        spheres = np.array([[p.x, p.y, p.z] for p in sk[1].points])
        np.testing.assert_allclose(spheres, xyz[:33][seen], rtol=1e-6)
        assert node.stats()['people'] == 3
    finally:
        node.close()
        probe.destroy_node()
        node.destroy_node()


def test_nobody_in_view_deletes_everyone_and_publishes_empty_tables(ctx):
    node, probe, ex = _node_and_probe(ctx)
    got: dict[str, list] = {'mesh_markers': [], 'people': [], 'mask': []}
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    probe.create_subscription(MarkerArray, f'{NODE}/mesh_markers', got['mesh_markers'].append,
                              qos)
    probe.create_subscription(PointCloud2, f'{NODE}/people', got['people'].append, qos)
    probe.create_subscription(Image, f'{NODE}/mask', got['mask'].append, qos)
    try:
        end = time.monotonic() + 10
        while not (node.pub_markers.get_subscription_count()
                   and node.pub_people.get_subscription_count()
                   and node.pub_mask.get_subscription_count()):
            ex.spin_once(timeout_sec=0.05)
            assert time.monotonic() < end
        a, b = _person(6, 0), _person(40, 1)
        for sec, people in ((1, [a, b]), (2, [])):
            node._on_image(conv.rgb_to_image(np.zeros((H, W, 3), np.uint8), 'rgb8',
                                             Header(stamp=Time(sec=sec), frame_id='cam')))
            _, meta, _ = node.pipeline.submitted[-1]
            mask = np.logical_or.reduce([p.mask for p in people]) if people else \
                np.zeros((H, W), bool)
            node.pipeline.on_result(meta, FrameResult(people, mask), None)
        end = time.monotonic() + 10
        while len(got['mesh_markers']) < 2 or len(got['people']) < 2 or len(got['mask']) < 2:
            ex.spin_once(timeout_sec=0.05)
            assert time.monotonic() < end
        last = got['mesh_markers'][1].markers
        assert sorted((m.id, m.action) for m in last) == [(1, Marker.DELETE), (2, Marker.DELETE)]
        assert got['people'][1].width == 0
        both = np.frombuffer(bytes(got['mask'][0].data), np.uint8).reshape(H, W) > 0
        assert np.array_equal(both, a.mask | b.mask)        # ~/mask: every person's pixels
        assert node.stats()['no_person'] == 1
    finally:
        node.close()
        probe.destroy_node()
        node.destroy_node()
