"""
Synthetic people: posed Anny bodies with clothing-like colours (the synthetic sets' subjects).

Bodies come from the Anny parametric human model (``anny``, Apache-2.0, MakeHuman data): a
random phenotype (sex, age, muscle, weight, height, proportions) is posed from a small pose
library with random perturbations. Clothing is imitated by colouring body regions (from the
dominant skinning bone of each vertex): shirt, trousers or shorts, shoes, hair, skin; a shirt may
carry stripes.

Simplifications: no garments (clothes have the body's shape), no hair geometry, per-face
colours, no facial expressions; eyeballs and the inner mouth parts are dropped (only the
watertight body shell is kept).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

# Anny (x = the person's left, y = backwards, z = up) -> ours (x right in the image of a person
# facing the camera, y up, z towards the camera, i.e. the person faces +z).
_ANNY_TO_OURS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

# Body regions from the dominant skinning bone of each vertex.
PARTS = ('head', 'torso', 'upperarm', 'forearm', 'hand', 'hips', 'thigh', 'shin', 'foot', 'hair')
_PART_ID = {name: i for i, name in enumerate(PARTS)}


def _bone_part(bone: str) -> str:
    """Body region of an Anny bone label."""
    base = bone.split('.')[0]
    if base.startswith(('neck', 'head', 'eye')):
        return 'head'
    if base.startswith(('spine', 'clavicle', 'shoulder')):
        return 'torso'
    if base.startswith('upperarm'):
        return 'upperarm'
    if base.startswith('lowerarm'):
        return 'forearm'
    if base.startswith(('wrist', 'finger', 'metacarpal')):
        return 'hand'
    if base.startswith(('root', 'pelvis')):
        return 'hips'
    if base.startswith('upperleg'):
        return 'thigh'
    if base.startswith('lowerleg'):
        return 'shin'
    if base.startswith(('foot', 'toe')):
        return 'foot'
    raise ValueError(f'unknown Anny bone {bone!r}')


# Pose library, in joint terms (degrees). 'arm.S': (elevation from hanging down: 0 down, 90
# horizontal, 180 up; azimuth: 0 sideways, +90 forwards, -90 backwards), 'elbow.S' and 'knee.S':
# bend (0 = straight), 'hip.S': (flexion forwards, abduction outwards), 'torso': (bend forwards,
# lean sideways, twist to the person's left), 'head': (nod down, tilt, turn to the person's left).
_POSES: dict[str, dict[str, tuple[float, ...]]] = {
    'stand': {'arm.L': (10, 0), 'arm.R': (10, 0), 'elbow.L': (15,), 'elbow.R': (15,)},
    'a_pose': {'arm.L': (40, 0), 'arm.R': (40, 0), 'elbow.L': (5,), 'elbow.R': (5,)},
    't_pose': {'arm.L': (90, 0), 'arm.R': (90, 0), 'elbow.L': (0,), 'elbow.R': (0,)},
    'walk': {'hip.L': (20, 0), 'knee.L': (10,), 'hip.R': (-15, 0), 'knee.R': (35,),
             'arm.L': (20, -80), 'arm.R': (25, 80), 'elbow.L': (15,), 'elbow.R': (35,)},
    'arms_up': {'arm.L': (165, 10), 'arm.R': (165, 10), 'elbow.L': (10,), 'elbow.R': (10,)},
    'one_arm_up': {'arm.L': (10, 0), 'arm.R': (165, 10), 'elbow.L': (15,), 'elbow.R': (10,)},
    'reach_forward': {'arm.L': (85, 80), 'arm.R': (85, 80), 'elbow.L': (10,), 'elbow.R': (10,),
                      'torso': (10, 0, 0)},
    'reach_side': {'arm.L': (95, 10), 'arm.R': (15, 0), 'elbow.L': (5,), 'elbow.R': (20,),
                   'torso': (0, 8, 0)},
    'point': {'arm.L': (10, 0), 'arm.R': (80, 45), 'elbow.L': (20,), 'elbow.R': (5,),
              'head': (0, 0, -25)},
    'squat': {'hip.L': (75, 12), 'hip.R': (75, 12), 'knee.L': (100,), 'knee.R': (100,),
              'torso': (25, 0, 0), 'arm.L': (75, 85), 'arm.R': (75, 85)},
    'bent_knees': {'hip.L': (25, 5), 'hip.R': (25, 5), 'knee.L': (45,), 'knee.R': (45,),
                   'arm.L': (15, 20), 'arm.R': (15, 20), 'elbow.L': (40,), 'elbow.R': (40,)},
    'lunge': {'hip.L': (60, 0), 'knee.L': (70,), 'hip.R': (-20, 0), 'knee.R': (30,),
              'arm.L': (20, 0), 'arm.R': (20, 0)},
    'kick': {'hip.L': (50, 0), 'knee.L': (15,), 'arm.L': (40, -30), 'arm.R': (45, 30)},
    'side_step': {'hip.L': (0, 20), 'hip.R': (0, 15), 'arm.L': (25, 0), 'arm.R': (25, 0)},
    'turn_torso': {'torso': (0, 0, 30), 'head': (0, 0, 30), 'arm.L': (15, 0), 'arm.R': (15, 0),
                   'elbow.L': (20,), 'elbow.R': (20,)},
    'hands_on_hips': {'arm.L': (40, -20), 'arm.R': (40, -20), 'elbow.L': (100,),
                      'elbow.R': (100,)},
    'arms_bent': {'arm.L': (90, 0), 'elbow.L': (90,), 'arm.R': (30, 60), 'elbow.R': (90,),
                  'head': (10, 0, 15)},
}
# Random perturbation (standard deviations, degrees) applied on top of every pose.
_POSE_JITTER = {'arm.L': (10, 15), 'arm.R': (10, 15), 'elbow.L': (12,), 'elbow.R': (12,),
                'hip.L': (5, 3), 'hip.R': (5, 3), 'knee.L': (5,), 'knee.R': (5,),
                'torso': (4, 3, 10), 'head': (8, 5, 20)}
_POSE_DEFAULT = {'arm': (10.0, 0.0), 'elbow': (15.0,), 'hip': (0.0, 0.0), 'knee': (0.0,),
                 'torso': (0.0, 0.0, 0.0), 'head': (0.0, 0.0, 0.0)}

_SKIN_TONES = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 94],
                        [161, 102, 64], [120, 74, 44], [89, 55, 33]], dtype=np.float64)
_HAIR_COLOURS = np.array([[20, 15, 12], [60, 40, 25], [110, 75, 40], [190, 150, 90],
                          [150, 60, 30], [140, 140, 140]], dtype=np.float64)


@dataclass
class Person:
    """A posed body mesh in metres, y up, facing +z, with per-face albedo colours."""

    vertices: np.ndarray                # (V, 3) float64
    faces: np.ndarray                   # (F, 3) int32
    face_colors: np.ndarray             # (F, 3) uint8 albedo
    face_parts: np.ndarray              # (F,) uint8 index into PARTS
    params: dict = field(default_factory=dict)   # phenotype, pose name, outfit (for the record)

    def vertex_colors(self) -> np.ndarray:
        """Per-vertex colours (mean of the adjacent faces' colours), uint8 (V, 3)."""
        acc = np.zeros((len(self.vertices), 3))
        cnt = np.zeros(len(self.vertices))
        for k in range(3):
            np.add.at(acc, self.faces[:, k], self.face_colors.astype(np.float64))
            np.add.at(cnt, self.faces[:, k], 1.0)
        return np.clip(acc / np.maximum(cnt, 1)[:, None] + 0.5, 0, 255).astype(np.uint8)


@lru_cache(maxsize=1)
def _anny_model():
    """Build the Anny model once per process (anny caches its data under ~/.cache)."""
    import anny
    import torch

    torch.set_num_threads(1)
    model = anny.Anny(skinning_method='lbs')
    faces = model.get_triangular_faces().cpu().numpy().astype(np.int64)
    w = model.vertex_bone_weights.cpu().numpy()
    idx = model.vertex_bone_indices.cpu().numpy()
    dominant = idx[np.arange(len(idx)), w.argmax(axis=1)]
    vpart = np.array([_PART_ID[_bone_part(model.bone_labels[b])] for b in dominant], np.uint8)
    # keep the largest connected component (the body shell; drops eyeballs, teeth, tongue)
    n_v = int(model.template_vertices.shape[-2])
    n_comp, comp = _face_components(faces, n_v)
    keep_face = comp == np.bincount(comp).argmax()
    used = np.unique(faces[keep_face])
    remap = -np.ones(n_v, np.int64)
    remap[used] = np.arange(len(used))
    with torch.no_grad():
        ref = model()['bone_poses'][0, :, :3, 3].cpu().numpy()
    joints = {b: ref[i] for i, b in enumerate(model.bone_labels)}
    return model, used, remap[faces[keep_face]].astype(np.int32), vpart[used], joints


def _face_components(faces: np.ndarray, n_vertices: int) -> tuple[int, np.ndarray]:
    """Label the connected components of a triangle mesh: (count, label per face)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_vertices, n_vertices))
    n, labels = connected_components(graph, directed=False)
    return n, labels[faces[:, 0]]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation vector (radians) of the smallest rotation taking direction ``a`` to ``b``."""
    a, b = _unit(a), _unit(b)
    axis = np.cross(a, b)
    s = np.linalg.norm(axis)
    if s < 1e-9:
        return np.zeros(3)
    return axis / s * math.atan2(s, float(a @ b))


def _pose_rotvecs(pose: dict[str, np.ndarray], joints: dict[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    """
    Joint-terms pose (see _POSES) -> Anny bone rotation vectors (radians, 'local-ref' axes).

    Anny axes: x = the person's left, y = backwards, z = up. The reference pose (identity deltas)
    has the arms 42 degrees out, the elbows bent 42 degrees forwards and the legs straight.
    """
    out = {}
    for side, sx in (('L', 1.0), ('R', -1.0)):
        shoulder, elbow = joints[f'upperarm01.{side}'], joints[f'lowerarm01.{side}']
        wrist = joints[f'wrist.{side}']
        el, az = np.radians(pose[f'arm.{side}'])
        target = np.array([sx * math.sin(el) * math.cos(az), -math.sin(el) * math.sin(az),
                           -math.cos(el)])
        out[f'upperarm01.{side}'] = _align(elbow - shoulder, target)
        upper, fore = _unit(elbow - shoulder), _unit(wrist - elbow)
        ref_bend = math.acos(np.clip(upper @ fore, -1, 1))
        hinge = _unit(np.cross(upper, fore))
        out[f'lowerarm01.{side}'] = hinge * (math.radians(pose[f'elbow.{side}'][0]) - ref_bend)
        hip, knee = joints[f'upperleg01.{side}'], joints[f'lowerleg01.{side}']
        flex, abd = np.radians(pose[f'hip.{side}'])
        target = np.array([sx * math.sin(abd), -math.sin(flex) * math.cos(abd),
                           -math.cos(flex) * math.cos(abd)])
        out[f'upperleg01.{side}'] = _align(knee - hip, target)
        hinge = _unit(np.cross(knee - hip, [0.0, 1.0, 0.0]))
        out[f'lowerleg01.{side}'] = hinge * math.radians(pose[f'knee.{side}'][0])
    # torso and head: half of the rotation at each of two joints (smoother bending)
    for key, bones in (('torso', ('spine03', 'spine02')), ('head', ('neck01', 'head'))):
        bend, lean, turn = np.radians(pose[key])
        rv = np.array([bend, -lean, turn]) / 2.0
        for b in bones:
            out[b] = rv
    return out


def _rotvec_to_h(rotvec: np.ndarray):
    """(3,) rotation vector (radians) -> (1, 4, 4) homogeneous torch tensor (float64)."""
    import roma
    import torch

    r = roma.rotvec_to_rotmat(torch.as_tensor(rotvec, dtype=torch.float64))
    h = torch.eye(4, dtype=torch.float64)
    h[:3, :3] = r
    return h[None]


def sample_phenotype(rng: np.random.Generator) -> dict[str, float]:
    """Random adult-ish phenotype in Anny's [0, 1] parameters."""
    return {'gender': float(rng.uniform(0.0, 1.0)),
            'age': float(rng.uniform(0.55, 0.95)),      # 2/3 = young adult, 1 = old
            'muscle': float(rng.uniform(0.2, 0.9)),
            'weight': float(np.clip(rng.normal(0.5, 0.18), 0.1, 0.95)),
            'height': float(rng.uniform(0.1, 0.95)),
            'proportions': float(rng.uniform(0.2, 0.8))}


def sample_pose(rng: np.random.Generator, name: str | None = None
                ) -> tuple[str, dict[str, np.ndarray]]:
    """Draw a pose from the library (random unless ``name``), randomly perturbed."""
    if name is None:
        name = str(rng.choice(list(_POSES)))
    if name not in _POSES:
        raise ValueError(f'unknown pose {name!r}; available: {sorted(_POSES)}')
    pose = {}
    for key, sd in _POSE_JITTER.items():
        base = _POSES[name].get(key, _POSE_DEFAULT[key.split('.')[0]])
        pose[key] = np.asarray(base, np.float64) + rng.normal(0.0, 1.0, len(sd)) * np.asarray(sd)
        if key.startswith(('elbow', 'knee')):
            pose[key] = np.clip(pose[key], 0.0, 150.0)
        elif key.startswith('arm'):         # keep hanging arms out of the torso
            pose[key][0] = np.clip(pose[key][0], 8.0, 178.0)
    return name, pose


def _outfit(rng: np.random.Generator) -> dict:
    """Random clothing colours and coverage."""
    def colour() -> np.ndarray:
        hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(30, 250)]]],
                       np.uint8)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)

    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.9, 1.05)
    return {'skin': np.clip(skin, 0, 255),
            'hair': _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] if rng.random() < 0.85
            else None,
            'shirt': colour(), 'shirt2': colour() if rng.random() < 0.3 else None,
            'sleeves': str(rng.choice(['none', 'short', 'long'], p=[0.15, 0.45, 0.4])),
            'trousers': colour(),
            'legs': str(rng.choice(['shorts', 'long'], p=[0.3, 0.7])),
            'shoes': colour() * 0.5}


def _colour_faces(rest: np.ndarray, faces: np.ndarray, vpart: np.ndarray, outfit: dict,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-face albedo and region (PARTS index) from the rest-pose vertices (Anny axes)."""
    vp = vpart[faces]
    fpart = np.where(vp[:, 1] == vp[:, 2], vp[:, 1], vp[:, 0])     # majority of the 3 vertices
    centroid = rest[faces].mean(axis=1)
    head = vpart == _PART_ID['head']
    if outfit['hair'] is not None and head.any():
        hv = rest[head]
        top = hv[:, 2].max()
        face_front = hv[:, 1].min()
        # a cap above the forehead and at the back of the head
        is_hair = (centroid[:, 2] > top - 0.07) | ((centroid[:, 1] > face_front + 0.09)
                                                   & (centroid[:, 2] > top - 0.17))
        fpart = np.where((fpart == _PART_ID['head']) & is_hair, _PART_ID['hair'], fpart)
    cover = {'torso': 'shirt', 'hips': 'trousers', 'thigh': 'trousers', 'foot': 'shoes',
             'hair': 'hair'}
    if outfit['sleeves'] in ('short', 'long'):
        cover['upperarm'] = 'shirt'
    if outfit['sleeves'] == 'long':
        cover['forearm'] = 'shirt'
    if outfit['legs'] == 'long':
        cover['shin'] = 'trousers'
    # uncovered regions and a missing hair colour (bald) show the skin
    table = np.stack([outfit['skin'] if outfit[cover.get(p, 'skin')] is None
                      else outfit[cover.get(p, 'skin')] for p in PARTS])
    colours = table[fpart]
    if outfit['shirt2'] is not None:      # horizontal stripes on the shirt
        period = rng.uniform(0.04, 0.12)
        stripe = (np.floor(centroid[:, 2] / period).astype(np.int64) % 2 == 1)
        shirt = np.array([cover.get(p) == 'shirt' for p in PARTS])[fpart]
        colours = np.where((stripe & shirt)[:, None], outfit['shirt2'], colours)
    colours = colours * rng.uniform(0.94, 1.06, (len(faces), 1))       # a little fabric noise
    return np.clip(colours + 0.5, 0, 255).astype(np.uint8), fpart.astype(np.uint8)


def make_person(rng: np.random.Generator, pose: str | None = None) -> Person:
    """Random person: phenotype, pose from the library (perturbed), clothing-like colours."""
    import torch

    model, used, faces, vpart, joints = _anny_model()
    phen = sample_phenotype(rng)
    pose_name, joint_pose = sample_pose(rng, pose)
    params = {b: _rotvec_to_h(v) for b, v in _pose_rotvecs(joint_pose, joints).items()}
    with torch.no_grad():
        out = model(pose_parameters=params, phenotype_kwargs=phen)
    verts = out['vertices'][0].cpu().numpy()[used]
    rest = out['rest_vertices'][0].cpu().numpy()[used]
    outfit = _outfit(rng)
    colours, fpart = _colour_faces(rest, faces, vpart, outfit, rng)
    verts = verts @ _ANNY_TO_OURS.T
    verts = verts - np.array([0.5 * (verts[:, 0].min() + verts[:, 0].max()), verts[:, 1].min(),
                              0.5 * (verts[:, 2].min() + verts[:, 2].max())])
    record = {'phenotype': phen, 'pose': pose_name, 'sleeves': outfit['sleeves'],
              'legs': outfit['legs'], 'hair': outfit['hair'] is not None}
    return Person(verts, faces, colours, fpart, record)
