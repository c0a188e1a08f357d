"""
Dressed synthetic people: garments as geometry on a posed Anny body (issue 26, first part).

Each garment is a signed-distance-like field around the posed body: an offset surface of the
body's signed distance over the body parts it covers (shirt, coat, trousers, shoes, hair, hat),
or a swept shape (a skirt's elliptic cone that does not follow the legs, a backpack's rounded
box). The fields are evaluated on a voxel grid, unioned with the body's signed distance (minimum)
and meshed by scikit-image's marching cubes, which gives one closed surface: the ground truth.

Hand-written here because no library in the environment offers it: the garment fields
themselves (a few lines of numpy each) and the sign of the body's distance, which comes from
:func:`~monoport_ros.offline.synthetic.occupancy` (winding votes) rather than Open3D's parity
sign, as posed bodies self-intersect a little.
"""
from __future__ import annotations

import numpy as np

from ..core.o3d import o3d
from .people import PARTS, Person
from .winding import occupancy

_P = {name: i for i, name in enumerate(PARTS)}
SKIN_TONES = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 94],
                       [161, 102, 64], [120, 74, 44], [89, 55, 33]], dtype=np.float64)
HAIR_COLOURS = np.array([[20, 15, 12], [60, 40, 25], [110, 75, 40], [190, 150, 90],
                         [150, 60, 30], [140, 140, 140]], dtype=np.float64)
PATTERNS = ('plain', 'stripes', 'checks', 'denim', 'knit', 'dots')
COMPONENTS = ('body', 'top', 'bottom', 'shoes', 'hair', 'hat', 'bag')


def sample_outfit(rng: np.random.Generator) -> dict:
    """Random garment parameters (plain JSON types, written into info.json)."""
    def u(lo: float, hi: float) -> float:
        return round(float(rng.uniform(lo, hi)), 4)

    top = str(rng.choice(['tshirt', 'shirt', 'jacket', 'coat', 'none'],
                         p=[0.3, 0.25, 0.2, 0.15, 0.1]))
    bottom = str(rng.choice(['trousers', 'shorts', 'skirt', 'dress'], p=[0.5, 0.2, 0.2, 0.1]))
    return {
        'top': top,
        'sleeves': {'tshirt': 'short', 'none': 'none'}.get(top, 'long'),
        'top_offset_m': {'tshirt': u(0.008, 0.025), 'shirt': u(0.008, 0.03),
                         'jacket': u(0.02, 0.04), 'coat': u(0.025, 0.05),
                         'none': 0.0}[top],
        'top_hem': {'coat': u(0.45, 0.8), 'jacket': u(0.05, 0.2)}.get(top, u(0.0, 0.12)),
        'folds': {'amplitude': u(0.1, 0.5), 'freq': u(8.0, 25.0), 'phase': u(0.0, 6.283)},
        'bottom': bottom,
        'bottom_offset_m': u(0.004, 0.035),
        'flare': u(0.0, 0.04),
        'shorts_length': u(0.3, 0.8),
        'skirt_length': u(0.3, 0.95),
        'skirt_flare': u(0.05, 0.25),
        'shoes': str(rng.choice(['shoes', 'boots'], p=[0.75, 0.25])),
        'hair': str(rng.choice(['bald', 'short', 'medium', 'long', 'bun'],
                               p=[0.1, 0.35, 0.2, 0.25, 0.1])),
        'hair_volume_m': u(0.005, 0.035),
        'hair_length_m': u(0.1, 0.35),
        'hat': str(rng.choice(['none', 'beanie', 'hood'], p=[0.75, 0.15, 0.1])),
        'bag': str(rng.choice(['none', 'backpack'], p=[0.8, 0.2])),
        'colours': {k: [int(c) for c in rng.integers(20, 240, 3)]
                    for k in ('top', 'bottom', 'shoes', 'hat', 'bag', 'second')},
        'patterns': {k: str(rng.choice(PATTERNS)) for k in ('top', 'bottom')},
        'pattern_scale_m': u(0.02, 0.1),
        'skin': int(rng.integers(len(SKIN_TONES))),
        'hair_colour': int(rng.integers(len(HAIR_COLOURS))),
    }


class _Body:
    """Closest-point queries on the posed body: signed distance and the nearest part."""

    def __init__(self, person: Person) -> None:
        self.person = person
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(person.vertices.astype(np.float32)),
                                 o3d.core.Tensor(person.faces.astype(np.uint32)))
        v, fp = person.vertices, person.face_parts
        vpart = np.zeros(len(v), np.int64)
        vpart[person.faces.ravel()] = np.repeat(fp, 3)

        def ys(part: str) -> np.ndarray:
            return v[vpart == _P[part], 1]

        self.y_knee = float(ys('shin').max())
        self.y_ankle = float(ys('foot').max())
        self.y_hip = float(ys('thigh').max())
        self.y_waist = float(ys('hips').max())
        head = v[vpart == _P['head']]
        self.head_top = float(head[:, 1].max())
        self.head_centre = np.array([head[:, 0].mean(), self.head_top - 0.11,
                                     0.5 * (head[:, 2].min() + head[:, 2].max())])
        self.head_front = float(head[:, 2].max())
        # the trunk's cross-section at the waist: the skirt's top
        trunk = np.isin(vpart, [_P['torso'], _P['hips'], _P['thigh']])
        ring = v[trunk & (np.abs(v[:, 1] - self.y_waist) < 0.06)]
        self.hip_centre = 0.5 * (ring.min(axis=0) + ring.max(axis=0))
        self.hip_half = 0.5 * np.ptp(ring[:, [0, 2]], axis=0)
        torso = v[vpart == _P['torso']]
        self.torso_lo, self.torso_hi = torso.min(axis=0), torso.max(axis=0)

    def query(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(signed distance, nearest part index) of (N, 3) points; negative inside."""
        ans = self.scene.compute_closest_points(o3d.core.Tensor(pts.astype(np.float32)),
                                                nthreads=0)
        dist = np.linalg.norm(ans['points'].numpy() - pts, axis=1)
        part = self.person.face_parts[ans['primitive_ids'].numpy().astype(np.int64)]
        inside = occupancy(self.person.vertices, self.person.faces, pts)
        return np.where(inside, -dist, dist), part.astype(np.int64)


def _rounded_box(pts: np.ndarray, centre: np.ndarray, half: np.ndarray, r: float) -> np.ndarray:
    q = np.abs(pts - centre) - (half - r)
    return (np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0) - r)


def garment_fields(body: _Body, pts: np.ndarray, o: dict) -> np.ndarray:
    """Fields (len(COMPONENTS), N) at ``pts``: negative inside each component."""
    d, part = body.query(pts)
    y = pts[:, 1]
    big = np.full(len(pts), 1.0)
    out = np.tile(big, (len(COMPONENTS), 1))
    out[0] = d

    def covered(names: tuple[str, ...]) -> np.ndarray:
        return np.isin(part, [_P[n] for n in names])

    f = o['folds']
    folds = 1 + f['amplitude'] * np.sin(f['freq'] * pts[:, 0] + f['phase']) * np.sin(
        0.7 * f['freq'] * y + 1.3 * f['freq'] * pts[:, 2])
    if o['top'] != 'none':
        parts = ('torso', 'upperarm') + (('forearm',) if o['sleeves'] == 'long' else ())
        parts += ('hips', 'thigh') if o['top'] == 'coat' else ()
        hem = body.y_waist - o['top_hem'] * (body.y_waist - body.y_knee)
        # loose cloth hangs: it stands off more towards the hem
        off = o['top_offset_m'] * folds * (1 + 0.5 * np.clip((body.torso_hi[1] - y) / 0.5, 0, 1))
        out[1] = np.where(covered(parts) & (y > hem), d - off, big)
    if o['bottom'] in ('trousers', 'shorts'):
        parts = ('torso', 'hips', 'thigh') + (('shin',) if o['bottom'] == 'trousers' else ())
        hem = (body.y_ankle + 0.02 if o['bottom'] == 'trousers'
               else body.y_hip - o['shorts_length'] * (body.y_hip - body.y_knee))
        off = o['bottom_offset_m'] + o['flare'] * np.clip((body.y_hip - y) / 0.8, 0, 1)
        out[2] = np.where(covered(parts) & (y > hem) & (y < body.y_waist), d - off, big)
    else:   # skirt or dress: an elliptic cone from the waist down, not following the legs
        top = body.y_waist + (0.35 if o['bottom'] == 'dress' else 0.0)
        hem = body.y_hip - o['skirt_length'] * (body.y_hip - body.y_knee) * 1.3
        drop = np.clip(body.y_waist - y, 0, None)
        half = body.hip_half[None, :] + 0.02 + o['skirt_flare'] * drop[:, None]
        rel = (pts[:, [0, 2]] - body.hip_centre[[0, 2]]) / half
        cone = (np.linalg.norm(rel, axis=1) - 1.0) * half.min(axis=1)
        skirt = np.maximum(np.maximum(cone, y - body.y_waist), hem - y)
        out[2] = skirt
        if o['bottom'] == 'dress':      # the bodice: an offset of the torso up to the chest
            bodice = np.where(covered(('torso', 'hips')) & (y < top), d - 0.01, big)
            out[2] = np.minimum(out[2], bodice)
    shoe_top = body.y_ankle + (0.25 if o['shoes'] == 'boots' else 0.0)
    out[3] = np.where(covered(('foot', 'shin')) & (y < shoe_top), d - 0.012, big)
    if o['hair'] != 'bald':
        line = body.head_top - (0.07 if o['hair'] == 'short' else 0.16)
        behind = pts[:, 2] < body.head_front - 0.1
        scalp = covered(('head',)) & ((y > body.head_top - 0.06) | (behind & (y > line)))
        hair = np.where(scalp, d - o['hair_volume_m'], big)
        c = body.head_centre
        if o['hair'] in ('medium', 'long'):
            length = o['hair_length_m'] * (2.0 if o['hair'] == 'long' else 1.0)
            centre = np.array([c[0], c[1] - 0.5 * length + 0.05, c[2] - 0.06])
            half = np.array([0.08 + o['hair_volume_m'], 0.5 * length + 0.05, 0.05])
            hair = np.minimum(hair, _rounded_box(pts, centre, half, 0.04))
        elif o['hair'] == 'bun':
            hair = np.minimum(hair, np.linalg.norm(pts - (c + [0, 0.06, -0.12]), axis=1) - 0.05)
        out[4] = hair
    if o['hat'] == 'beanie':
        out[5] = np.where(covered(('head',)) & (y > body.head_top - 0.09), d - 0.015, big)
    elif o['hat'] == 'hood':
        face = pts[:, 2] > body.head_front - 0.06
        out[5] = np.where(covered(('head', 'torso')) & (y > body.head_top - 0.3) & ~face,
                          d - 0.035, big)
    if o['bag'] == 'backpack':
        lo, hi = body.torso_lo, body.torso_hi
        centre = np.array([0.5 * (lo[0] + hi[0]), hi[1] - 0.28, lo[2] - 0.07])
        out[6] = _rounded_box(pts, centre, np.array([0.15, 0.2, 0.09]), 0.04)
    return out


def _pattern(name: str, pts: np.ndarray, scale: float, base: np.ndarray,
             second: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Procedural fabric colour at (N, 3) points (per face, body-fixed coordinates)."""
    k = np.floor(pts / scale).astype(np.int64)
    if name == 'stripes':
        return np.where((k[:, 1] % 2 == 0)[:, None], base, second)
    if name == 'checks':
        return np.where(((k[:, 0] + k[:, 1] + k[:, 2]) % 2 == 0)[:, None], base,
                        0.5 * (base + second))
    if name == 'denim':
        t = np.sin((pts[:, 0] + pts[:, 1]) * 900.0)
        return np.array([60, 80, 130.0]) * (0.85 + 0.15 * t)[:, None]
    if name == 'knit':
        return base * (0.8 + 0.2 * np.abs(np.sin(pts[:, 1] * 400.0)))[:, None]
    if name == 'dots':
        r = np.linalg.norm(pts / scale - k - 0.5, axis=1)
        return np.where((r < 0.25)[:, None], second, base)
    return base * rng.uniform(0.93, 1.07, (len(pts), 1))


def dress(person: Person, rng: np.random.Generator, voxel_m: float = 0.012,
          outfit: dict | None = None) -> Person:
    """
    Dress ``person``: the marching-cubes mesh of the body and garment union, with colours.

    ``voxel_m`` is the grid step (the mesh resolution). The returned person's ``params`` hold
    the undressed record plus ``outfit`` (the garment parameters) and ``voxel_m``.
    """
    from skimage.measure import marching_cubes

    o = sample_outfit(rng) if outfit is None else outfit
    body = _Body(person)
    lo = person.vertices.min(axis=0) - 0.15 - 3 * voxel_m
    hi = person.vertices.max(axis=0) + 0.15 + 3 * voxel_m
    lo[1] = person.vertices[:, 1].min() - 0.05
    hi[1] = person.vertices[:, 1].max() + 0.08
    # a grid offset by a fraction of a voxel: no sample exactly on an axis-aligned face
    axes = [np.arange(a + 0.37 * voxel_m, b, voxel_m) for a, b in zip(lo, hi)]
    grid = np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1).reshape(-1, 3)
    field = garment_fields(body, grid, o).min(axis=0).reshape([len(a) for a in axes])
    field[[0, -1]], field[:, [0, -1]], field[:, :, [0, -1]] = 1.0, 1.0, 1.0   # closed surface
    verts, faces, _, _ = marching_cubes(field.astype(np.float32), 0.0, spacing=(voxel_m,) * 3)
    verts = verts + np.array([a[0] for a in axes])
    faces = faces.astype(np.int32)     # skimage's winding is outward for a field < 0 inside
    cen = verts[faces].mean(axis=1)
    comp = garment_fields(body, cen, o).argmin(axis=0)
    _, part = body.query(cen)
    colours = np.zeros((len(faces), 3))
    skin = SKIN_TONES[o['skin']] * rng.uniform(0.9, 1.05)
    colours[:] = skin
    cols = {k: np.asarray(v, np.float64) for k, v in o['colours'].items()}
    for i, name in enumerate(COMPONENTS[1:], start=1):
        sel = comp == i
        if name in ('top', 'bottom'):
            colours[sel] = _pattern(o['patterns'][name], cen[sel], o['pattern_scale_m'],
                                    cols[name], cols['second'], rng)
        elif name == 'hair':
            colours[sel] = HAIR_COLOURS[o['hair_colour']] * rng.uniform(0.85, 1.1,
                                                                        (sel.sum(), 1))
        else:
            colours[sel] = cols[name] * (0.5 if name == 'shoes' else 1.0)
    fpart = np.where(comp == COMPONENTS.index('hair'), _P['hair'], part)
    colours = np.clip(colours + 0.5, 0, 255).astype(np.uint8)
    params = {**person.params, 'dressed': True, 'voxel_m': voxel_m, 'outfit': o}
    return Person(verts, faces, colours, fpart.astype(np.uint8), params)
