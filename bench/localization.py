"""
Benchmark: efficient surface localization vs dense grid vs a plain octree, on an anny body.

``.venv/bin/python bench/localization.py --json`` prints one JSON line per resolution with
resolution, dense_queries, queries, ratio, identical, octree_queries, seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from monoport_ros.core.config import octree_depth_for
from monoport_ros.offline.body_field import human_occupancy_field
from monoport_ros.core.localization import (  # noqa: E402
    dense_occupancy, localize_surface, mixed_cells)


def plain_octree_queries(field, resolution: int, depth: int, threshold: float = 0.5) -> int:
    """
    Count the queries of a plain octree.

    Dense coarse grid, then every cell that straddles the surface is subdivided and all of its new
    grid points are queried (no inference across levels).
    """
    n = resolution + 1
    values = torch.zeros((n, n, n))
    queried = torch.zeros((n, n, n), dtype=torch.bool)
    stride = 1 << (depth - 1)
    idx = torch.arange(0, n, stride)
    grid = torch.stack(torch.meshgrid(idx, idx, idx, indexing='ij'), -1).reshape(-1, 3)
    values[grid[:, 0], grid[:, 1], grid[:, 2]] = field(grid.float() * 2 / resolution - 1)
    queried[grid[:, 0], grid[:, 1], grid[:, 2]] = True
    count = grid.shape[0]
    cells = None
    while stride > 1:
        straddle = mixed_cells(values[::stride, ::stride, ::stride] > threshold)
        if cells is not None:
            straddle &= cells          # only children of refined cells exist in an octree
        half = stride // 2
        # every fine point inside a straddling cell
        fine = torch.zeros_like(queried[::half, ::half, ::half])
        for ox in (0, 1, 2):
            for oy in (0, 1, 2):
                for oz in (0, 1, 2):
                    m = fine.shape[0]
                    fine[ox:m - 2 + ox:2, oy:m - 2 + oy:2, oz:m - 2 + oz:2] |= straddle
        new = (fine & ~queried[::half, ::half, ::half]).nonzero() * half
        if new.shape[0]:
            values[new[:, 0], new[:, 1], new[:, 2]] = field(new.float() * 2 / resolution - 1)
            queried[new[:, 0], new[:, 1], new[:, 2]] = True
        count += new.shape[0]
        # children cells at the finer level
        nxt = torch.zeros((2 * straddle.shape[0],) * 3, dtype=torch.bool)
        for ox in (0, 1):
            for oy in (0, 1):
                for oz in (0, 1):
                    nxt[ox::2, oy::2, oz::2] = straddle
        cells = nxt
        stride = half
    return count


def main() -> int:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--json', action='store_true', help='one JSON line per resolution')
    ap.add_argument('--resolutions', default='128,256,512')
    ap.add_argument('--seed', type=int, default=3)
    args = ap.parse_args()
    for res in (int(r) for r in args.resolutions.split(',')):
        depth = octree_depth_for(res)
        field = human_occupancy_field(res, args.seed)
        t0 = time.perf_counter()
        fast = localize_surface(field, res, depth, batch_size=1 << 20)
        seconds = time.perf_counter() - t0
        dense = dense_occupancy(field, res, batch_size=1 << 21)
        row = {'resolution': res, 'octree_depth': depth, 'dense_queries': dense.queries,
               'queries': fast.queries, 'ratio': round(dense.queries / fast.queries, 1),
               'identical': bool(torch.equal(fast.occupancy, dense.occupancy)),
               'octree_queries': plain_octree_queries(field, res, depth),
               'seconds': round(seconds, 2)}
        del dense
        print(json.dumps(row) if args.json else
              '{resolution:4d}^3  queries {queries:>9d} / dense {dense_queries:>10d}  '
              'ratio {ratio:6.1f}  '
              'identical {identical}  octree {octree_queries:>9d}  {seconds:.2f}s'.format(**row),
              flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
