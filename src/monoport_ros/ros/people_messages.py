"""
The messages of every person in view: meshes, points, the people table, skeletons and joints.

Each person is a :class:`PlacedPerson`: geometry already in the camera's optical frame, and the
track id the node gave them. Markers use ``ns`` ``person`` (meshes), ``skeleton`` (landmarks) and
``bones`` (links), each with ``id`` the track id (REP-155 calls it the body id); a person who
has left gets a DELETE of each of their markers. The node's first MarkerArray on each topic
starts with a DELETEALL, which clears what an earlier run left in RViz.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np
from geometry_msgs.msg import Pose, PoseArray
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from . import conversions as conv
from ..core.body_pose import LANDMARK_LINKS, MIN_VISIBILITY

MESH_NS, SKELETON_NS, BONES_NS = 'person', 'skeleton', 'bones'
JOINT_DIAMETER_M = 0.04
BONE_WIDTH_M = 0.015


@dataclass
class PlacedPerson:
    """One person of a frame, placed in the camera's optical frame (metres)."""

    track_id: int
    box: np.ndarray                     # mask box x0, y0, x1, y1 (pixels)
    vertices: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int32))
    vertex_colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    point_colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    joints: np.ndarray | None = None    # (33, 3) BlazePose order; NaN where not seen

    def surface(self) -> np.ndarray:
        """Return the placed surface samples: mesh vertices, else points, else seen joints."""
        for pts in (self.vertices, self.points):
            if len(pts):
                return np.asarray(pts)
        if self.joints is not None:
            return self.joints[np.isfinite(self.joints).all(axis=1)]
        return np.zeros((0, 3))


def track_color(track_id: int) -> tuple[float, float, float, float]:
    """Return an opaque colour per track id (golden-ratio hues: neighbours differ)."""
    r, g, b = colorsys.hsv_to_rgb((track_id * 0.618034) % 1.0, 0.8, 0.95)
    return (r, g, b, 1.0)


def placed_joints(model_pose: np.ndarray | None, place) -> np.ndarray | None:
    """Joints (33, 3) in the camera frame from a model-space pose array; NaN where not seen."""
    if model_pose is None:
        return None
    joints = place.apply(model_pose[:, :3]).astype(np.float64)
    joints[model_pose[:, 3] < MIN_VISIBILITY] = np.nan
    return joints


def _delete_all() -> list[conv.MarkerSpec]:
    return [conv.MarkerSpec('', 0, Marker.CUBE, Marker.DELETEALL)]


def mesh_markers(people: list[PlacedPerson], gone: list[int], header: Header,
                 clear: bool = False) -> bytes:
    """``~/mesh_markers``: a TRIANGLE_LIST per person with a mesh, a DELETE per one gone."""
    specs = _delete_all() if clear else []
    specs += [conv.triangle_marker(p.vertices, p.faces, p.vertex_colors, MESH_NS, p.track_id)
              for p in people if len(p.faces)]
    empty = [p.track_id for p in people if not len(p.faces)]    # seen, but without a surface
    specs += [conv.MarkerSpec(MESH_NS, i, Marker.TRIANGLE_LIST, Marker.DELETE)
              for i in gone + empty]
    return conv.marker_array_cdr(specs, header)


def skeleton_markers(people: list[PlacedPerson], gone: list[int], header: Header,
                     clear: bool = False) -> bytes:
    """``~/skeletons``: per person a SPHERE_LIST of the seen landmarks and a LINE_LIST of links."""
    specs = _delete_all() if clear else []
    for p in people:
        if p.joints is None:
            continue
        color = track_color(p.track_id)
        seen = np.isfinite(p.joints).all(axis=1)
        specs.append(conv.MarkerSpec(SKELETON_NS, p.track_id, Marker.SPHERE_LIST, Marker.ADD,
                                     p.joints[seen], scale=(JOINT_DIAMETER_M,) * 3, color=color))
        links = [pair for pair in LANDMARK_LINKS if seen[pair[0]] and seen[pair[1]]]
        ends = p.joints[np.array(links, int).reshape(-1)] if links else np.zeros((0, 3))
        specs.append(conv.MarkerSpec(BONES_NS, p.track_id, Marker.LINE_LIST, Marker.ADD, ends,
                                     scale=(BONE_WIDTH_M, 0.0, 0.0), color=color))
    for i in gone:
        specs += [conv.MarkerSpec(SKELETON_NS, i, Marker.SPHERE_LIST, Marker.DELETE),
                  conv.MarkerSpec(BONES_NS, i, Marker.LINE_LIST, Marker.DELETE)]
    return conv.marker_array_cdr(specs, header)


def joints_message(people: list[PlacedPerson], header: Header) -> PoseArray:
    """``~/joints``: 33 poses per person (BlazePose order), people in ``~/people``'s order."""
    msg = PoseArray(header=header)
    for p in people:
        joints = p.joints if p.joints is not None else np.full((33, 3), np.nan)
        for x, y, z in joints.tolist():
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = x, y, z
            pose.orientation.w = 1.0
            msg.poses.append(pose)
    return msg


def people_message(people: list[PlacedPerson], header: Header) -> PointCloud2:
    """``~/people``: a row per person: centre and size of the placed surface, box, track id."""
    rows = np.zeros(len(people), conv.PERSON_ROW_DTYPE)
    for row, p in zip(rows, people):
        pts = p.surface()
        if len(pts):
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            row['x'], row['y'], row['z'] = pts.mean(axis=0)
            row['size_x'], row['size_y'], row['size_z'] = hi - lo
        else:
            row['x'] = row['y'] = row['z'] = np.nan
        row['box_x0'], row['box_y0'], row['box_x1'], row['box_y1'] = p.box
        row['person'] = p.track_id
    return conv.people_to_cloud(rows, header)


def points_message(people: list[PlacedPerson], header: Header) -> PointCloud2:
    """``~/points``: every person's coloured points with their track id (``person`` field)."""
    pts = [np.asarray(p.points, np.float32).reshape(-1, 3) for p in people]
    cols = [np.asarray(p.point_colors).reshape(-1, 3) for p in people]
    ids = [np.full(len(a), p.track_id, np.uint32) for a, p in zip(pts, people)]
    if not pts:
        return conv.points_to_cloud(np.zeros((0, 3)), np.zeros((0, 3)), header,
                                    np.zeros(0, np.uint32))
    return conv.points_to_cloud(np.concatenate(pts), np.concatenate(cols), header,
                                np.concatenate(ids))
