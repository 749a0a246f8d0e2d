"""Generate the bundled synthetic YCB-V sample (bench/data/samples/ycbv) deterministically.

    python scripts/make_ycbv_sample.py [OUT_DIR]        # default: bench/data/samples/ycbv

What it writes, in the official BOP layout (only what the BOP19 evaluation reads, plus camera_uw.json):

- ``models_eval/obj_000001..21.ply`` and ``models_info.json``: simple meshes chosen by ``obj_id % 3``:
  1 -> cylinder (continuous symmetry about z plus the 180 deg flip about x), 2 -> asymmetric L block (no
  symmetry), 0 -> box with three different side lengths (the three 180 deg rotations about its axes).
  Faces are midpoint-subdivided so that vertices are spread over the surface (as in the remeshed
  models_eval). Odd ids are ASCII PLY, even ids binary little-endian PLY (both occur in BOP releases).
  ``diameter`` = the largest distance between two vertices (toolkit ``calc_pts_diameter``).
- ``test/0000SS/``: scenes 48, 53 and 58 with three images each. Objects rest on a large table plane
  (the background); the camera moves around them, so objects occlude each other. Depth = the z-buffer of
  B1's renderer (metrics.render) + Gaussian noise (sigma 1 mm) quantised by ``depth_scale`` 0.1, with 1.5% of
  the pixels and half of the pixels along depth discontinuities missing (0). K is the YCB-V "uw" camera.
- ``scene_gt_info.json``: the toolkit's ``calc_gt_info.py`` procedure (object rendered alone on a 3x larger
  canvas for ``px_count_all``; distance images; bop19 visibility with delta 15 mm, float32 difference;
  bbox from ``calc_2d_bbox`` without clipping).
- ``test_targets_bop19.json``: ``enumerate_test_targets.py`` (min visib_fract 0.1; objects in GT order).
- ``test_targets_bop24.json``: one ``{"im_id", "scene_id"}`` per image (BOP 2024 6D detection targets).

Everything comes from ``numpy.random.default_rng(SEED)``, so rerunning gives the same files.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metrics.render import render_depth, render_scene_depth

SEED = 20251123
W, H = 640, 480
FX, FY, CX, CY = 1066.778, 1067.487, 312.9869, 241.3109
K = np.array([[FX, 0.0, CX], [0.0, FY, CY], [0.0, 0.0, 1.0]])
DEPTH_SCALE = 0.1
DELTA = 15.0
SCENES = {48: [1, 25, 49], 53: [1, 37, 73], 58: [1, 41, 81]}
OBJECTS_PER_SCENE = 5


# ------------------------------------------------------------------------------------------ meshes


def subdivide(v: np.ndarray, f: np.ndarray, times: int) -> tuple[np.ndarray, np.ndarray]:
    """Midpoint subdivision (each triangle -> 4), sharing edge midpoints so the mesh stays watertight."""
    for _ in range(times):
        verts = [tuple(x) for x in v]
        mid: dict[tuple[int, int], int] = {}

        def m(a: int, b: int, v=v, verts=verts, mid=mid) -> int:
            key = (min(a, b), max(a, b))
            if key not in mid:
                mid[key] = len(verts)
                verts.append(tuple((v[a] + v[b]) / 2))
            return mid[key]

        nf = []
        for a, b, c in f.tolist():
            ab, bc, ca = m(a, b), m(b, c), m(c, a)
            nf += [(a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca)]
        v, f = np.array(verts), np.array(nf, dtype=np.int64)
    return v, f


def prism(poly: np.ndarray, h: float, caps: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Extrude a counter-clockwise polygon (n, 2) to z in [-h/2, h/2]; ``caps`` triangulates it."""
    n = len(poly)
    v = np.concatenate([np.c_[poly, np.full(n, -h / 2)], np.c_[poly, np.full(n, h / 2)]])
    f = []
    for i in range(n):
        j = (i + 1) % n
        f += [(i, j, n + j), (i, n + j, n + i)]  # outward for a CCW polygon
    f += [(n + a, n + b, n + c) for a, b, c in caps]  # top, seen from +z
    f += [(a, c, b) for a, b, c in caps]  # bottom, reversed
    return v, np.array(f, dtype=np.int64)


def box(sx: float, sy: float, sz: float):
    poly = np.array([[-sx / 2, -sy / 2], [sx / 2, -sy / 2], [sx / 2, sy / 2], [-sx / 2, sy / 2]])
    return subdivide(*prism(poly, sz, [(0, 1, 2), (0, 2, 3)]), 2)


def cylinder(r: float, h: float, seg: int = 36):
    ang = 2 * np.pi * np.arange(seg) / seg
    poly = np.c_[r * np.cos(ang), r * np.sin(ang)]
    v, f = prism(poly, h, [])
    # caps: fans around centre vertices
    top, bot = len(v), len(v) + 1
    v = np.concatenate([v, [[0, 0, h / 2], [0, 0, -h / 2]]])
    caps = []
    for i in range(seg):
        j = (i + 1) % seg
        caps += [(top, seg + i, seg + j), (bot, j, i)]
    return subdivide(v, np.concatenate([f, np.array(caps, dtype=np.int64)]), 1)


def l_block(a: float, b: float, w1: float, w2: float, h: float):
    """An L: arms [0,a]x[0,w1] and [0,w2]x[0,b] (a != b, w1 != w2: no rotational symmetry), centred."""
    poly = np.array([[0, 0], [a, 0], [a, w1], [w2, w1], [w2, b], [0, b]], dtype=np.float64)
    v, f = prism(poly, h, [(0, 1, 2), (0, 2, 3), (0, 3, 4), (0, 4, 5)])
    v[:, 0] -= a / 2
    v[:, 1] -= b / 2
    return subdivide(v, f, 2)


def signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6)


def rot_flip(axis: int) -> np.ndarray:
    d = -np.ones(3)
    d[axis] = 1
    return np.diag(d)


def make_models(rng: np.random.Generator):
    models, info = {}, {}
    for obj_id in range(1, 22):
        kind = obj_id % 3
        if kind == 1:
            r, h = rng.uniform(28, 48), rng.uniform(90, 190)
            v, f = cylinder(r, h)
            sym_c = [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]
            sym_d = [rot_flip(0)]
        elif kind == 2:
            a, b = rng.uniform(110, 170), rng.uniform(60, 100)
            w1, w2 = rng.uniform(30, 45), rng.uniform(50, 70)
            v, f = l_block(a, b, w1, w2, rng.uniform(40, 70))
            sym_c, sym_d = [], []
        else:
            sx, sy, sz = np.sort(rng.uniform(50, 80, 3)) * np.array([1.0, 1.35, 1.8])
            v, f = box(sx, sy, sz)
            sym_c, sym_d = [], [rot_flip(0), rot_flip(1), rot_flip(2)]
        v = np.round(v, 4)
        assert signed_volume(v, f) > 0, obj_id
        diam = float(torch.cdist(torch.from_numpy(v), torch.from_numpy(v)).max())
        lo, hi = v.min(0), v.max(0)
        rec = {
            "diameter": diam,
            "min_x": lo[0],
            "min_y": lo[1],
            "min_z": lo[2],
            "size_x": hi[0] - lo[0],
            "size_y": hi[1] - lo[1],
            "size_z": hi[2] - lo[2],
        }
        rec = {k: float(x) for k, x in rec.items()}
        if sym_c:
            rec["symmetries_continuous"] = sym_c
        if sym_d:
            rec["symmetries_discrete"] = [
                [
                    float(x) + 0.0
                    for x in np.block([[S, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]).ravel()
                ]
                for S in sym_d
            ]
        models[obj_id] = (v, f)
        info[str(obj_id)] = rec
    return models, info


def write_ply(path: Path, v: np.ndarray, f: np.ndarray, binary: bool) -> None:
    head = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        f"element vertex {len(v)}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(f)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    with open(path, "wb") as fh:
        fh.write(("\n".join(head) + "\n").encode())
        if binary:
            fh.write(v.astype("<f4").tobytes())
            rec = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
            rec["n"], rec["i"] = 3, f
            fh.write(rec.tobytes())
        else:
            fh.write("".join(f"{x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in v).encode())
            fh.write("".join(f"3 {a} {b} {c}\n" for a, b, c in f).encode())


# ------------------------------------------------------------------------------------------ scenes


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera (OpenCV axes: z forward, y down) for a camera at ``eye`` looking at ``target``."""
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.array([0, 0, 1.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ eye


RESTING = [
    np.eye(3),
    np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0.0]]),
    np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0.0]]),
]


def place_objects(rng, models, obj_ids):
    """World poses of objects resting on the table z=0, not overlapping (footprint circles)."""
    placed = []
    for obj_id in obj_ids:
        v = models[obj_id][0]
        for _ in range(1000):
            R = rot_z(rng.uniform(0, 2 * np.pi)) @ RESTING[rng.integers(len(RESTING))]
            w = v @ R.T
            rad = np.linalg.norm(w[:, :2], axis=1).max()
            xy = rng.uniform(-170, 170, 2)
            if all(np.linalg.norm(xy - p[2]) > rad + p[3] + 5 for p in placed):
                t = np.array([xy[0], xy[1], -w[:, 2].min()])
                placed.append((obj_id, (R, t), xy, rad))
                break
        else:
            raise RuntimeError("could not place objects")
    return [(o, pose) for o, pose, _, _ in placed]


def table_mesh():
    s = 4000.0
    v = np.array([[-s, -s, 0], [s, -s, 0], [s, s, 0], [-s, s, 0]], dtype=np.float64)
    f = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int64)
    return subdivide(v, f, 3)


def dist_image(depth: np.ndarray) -> np.ndarray:
    """Toolkit ``depth_im_to_dist_im_fast``: distance from the camera centre (float64)."""
    ys, xs = np.meshgrid(np.arange(depth.shape[0]), np.arange(depth.shape[1]), indexing="ij")
    px = (xs - CX) / np.float64(FX)
    py = (ys - CY) / np.float64(FY)
    return np.sqrt((px * depth) ** 2 + (py * depth) ** 2 + depth.astype(np.float64) ** 2)


def gt_info(models, gts, depth_mm: np.ndarray) -> list[dict]:
    """Toolkit ``calc_gt_info.py`` for one image (bop19 visibility, delta 15)."""
    Kl = K.copy()
    Kl[0, 2] += W
    Kl[1, 2] += H
    dist_im = dist_image(depth_mm)
    out = []
    for g in gts:
        v, f = models[g["obj_id"]]
        R = torch.tensor(g["cam_R_m2c"]).reshape(1, 3, 3)
        t = torch.tensor(g["cam_t_m2c"]).reshape(1, 3)
        large = render_depth(
            torch.from_numpy(v), torch.from_numpy(f), R, t, torch.from_numpy(Kl), 3 * H, 3 * W
        )[0].numpy()
        d_gt = large[H : 2 * H, W : 2 * W]
        dist_gt = dist_image(d_gt)
        diff = dist_gt.astype(np.float32) - dist_im.astype(np.float32)
        visib = ((diff <= DELTA) | (dist_im == 0)) & (dist_gt > 0)
        all_mask = large > 0
        n_all = int(all_mask.sum())
        n_valid = int((dist_im[dist_gt > 0] > 0).sum())
        n_visib = int(visib.sum())
        bbox = bbox_visib = [-1, -1, -1, -1]
        if n_visib > 0:
            ys, xs = all_mask.nonzero()
            ys, xs = ys - H, xs - W
            bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
            ys, xs = visib.nonzero()
            bbox_visib = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
        out.append(
            {
                "bbox_obj": bbox,
                "bbox_visib": bbox_visib,
                "px_count_all": n_all,
                "px_count_valid": n_valid,
                "px_count_visib": n_visib,
                "visib_fract": n_visib / n_all if n_all > 0 else 0.0,
            }
        )
    return out


def make_depth(rng, models, world, R_w2c, t_w2c, table) -> tuple[np.ndarray, list[dict]]:
    gts, meshes, Rs, ts = [], [], [], []
    for obj_id, (R, t) in world:
        Rc, tc = R_w2c @ R, R_w2c @ t + t_w2c
        gts.append(
            {
                "cam_R_m2c": [float(x) for x in Rc.ravel()],
                "cam_t_m2c": [float(x) for x in tc],
                "obj_id": int(obj_id),
            }
        )
        v, f = models[obj_id]
        meshes.append((torch.from_numpy(v), torch.from_numpy(f)))
        Rs.append(Rc)
        ts.append(tc)
    meshes.append((torch.from_numpy(table[0]), torch.from_numpy(table[1])))
    Rs.append(R_w2c)
    ts.append(t_w2c)
    depth = (
        render_scene_depth(
            meshes, torch.from_numpy(np.stack(Rs)), torch.from_numpy(np.stack(ts)), torch.from_numpy(K), H, W
        )
        .numpy()
        .astype(np.float64)
    )
    noisy = depth + rng.normal(0, 1.0, depth.shape)
    # missing measurements: along depth discontinuities (half of them) and scattered pixels
    gy = np.abs(np.diff(depth, axis=0, prepend=depth[:1]))
    gx = np.abs(np.diff(depth, axis=1, prepend=depth[:, :1]))
    edge = np.maximum(gx, gy) > 30
    missing = (edge & (rng.random(depth.shape) < 0.5)) | (rng.random(depth.shape) < 0.015) | (depth <= 0)
    png = np.clip(np.round(noisy / DEPTH_SCALE), 0, 65535).astype(np.uint16)
    png[missing] = 0
    return png, gts


def main(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    if out.exists():
        shutil.rmtree(out)
    (out / "models_eval").mkdir(parents=True)
    models, info = make_models(rng)
    for obj_id, (v, f) in models.items():
        write_ply(out / "models_eval" / f"obj_{obj_id:06d}.ply", v, f, binary=obj_id % 2 == 0)
    (out / "models_eval" / "models_info.json").write_text(
        "{\n" + ",\n".join(f'  "{k}": {json.dumps(r, sort_keys=True)}' for k, r in info.items()) + "\n}\n"
    )
    (out / "camera_uw.json").write_text(
        json.dumps(
            {"cx": CX, "cy": CY, "depth_scale": DEPTH_SCALE, "fx": FX, "fy": FY, "height": H, "width": W}
        )
        + "\n"
    )
    table = table_mesh()
    targets = []
    for scene_id, im_ids in SCENES.items():
        obj_ids = [int(o) for o in rng.choice(np.arange(1, 22), OBJECTS_PER_SCENE, replace=False)]
        if scene_id == 53:
            obj_ids.append(obj_ids[0])  # two instances of one object
        world = place_objects(rng, models, obj_ids)
        sdir = out / "test" / f"{scene_id:06d}"
        (sdir / "depth").mkdir(parents=True)
        scene_gt, scene_info, scene_cam = {}, {}, {}
        az = rng.uniform(0, 2 * np.pi)
        for im_id in im_ids:
            az += rng.uniform(0.9, 1.6)
            el = rng.uniform(0.55, 1.0)
            dist = rng.uniform(750, 950)
            eye = dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
            R_w2c, t_w2c = look_at(eye, np.array([*rng.uniform(-40, 40, 2), 40.0]))
            png, gts = make_depth(rng, models, world, R_w2c, t_w2c, table)
            Image.fromarray(png).save(sdir / "depth" / f"{im_id:06d}.png")
            depth_mm = np.asarray(Image.open(sdir / "depth" / f"{im_id:06d}.png")).astype(
                np.float32
            ) * np.float32(DEPTH_SCALE)
            scene_gt[str(im_id)] = gts
            scene_info[str(im_id)] = gt_info(models, gts, depth_mm)
            scene_cam[str(im_id)] = {"cam_K": [float(x) for x in K.ravel()], "depth_scale": DEPTH_SCALE}
            counts: dict[int, int] = {}
            for g, inf in zip(gts, scene_info[str(im_id)]):
                if inf["visib_fract"] >= 0.1:
                    counts[g["obj_id"]] = counts.get(g["obj_id"], 0) + 1
            targets += [
                {"im_id": im_id, "inst_count": c, "obj_id": o, "scene_id": scene_id}
                for o, c in counts.items()
            ]
        for name, data in (
            ("scene_gt", scene_gt),
            ("scene_gt_info", scene_info),
            ("scene_camera", scene_cam),
        ):
            (sdir / f"{name}.json").write_text(
                "{\n"
                + ",\n".join(f'  "{k}": {json.dumps(x, sort_keys=True)}' for k, x in data.items())
                + "\n}\n"
            )
    (out / "test_targets_bop19.json").write_text(
        "[\n" + ",\n".join(f"  {json.dumps(t, sort_keys=True)}" for t in targets) + "\n]\n"
    )
    (out / "test_targets_bop24.json").write_text(  # BOP 2024 6D detection: every image once
        "[\n" + ",\n".join(f"  {json.dumps({'im_id': i, 'scene_id': s}, sort_keys=True)}"
                            for s, ims in SCENES.items() for i in ims) + "\n]\n"
    )
    print(f"wrote {out}: {len(targets)} targets")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "bench" / "data" / "samples" / "ycbv")
