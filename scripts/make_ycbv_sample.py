"""Generate the bundled synthetic YCB-V sample (bench/data/samples/ycbv) deterministically.

    python scripts/make_ycbv_sample.py [OUT_DIR]                  # default: bench/data/samples/ycbv
    python scripts/make_ycbv_sample.py --image-files [OUT_DIR]    # only the RGB/mask/COCO/detection files

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

Then, from those files (:func:`add_image_files`; ``--image-files`` runs only this step on an existing sample):

- ``rgb/NNNNNN.png``: the objects of ``scene_gt.json`` rendered with the same rasteriser, each visible pixel in
  one flat colour per object id, the rest table grey (no shading, no noise): an image for RGB methods (GDRNPP).
- ``mask/`` and ``mask_visib/NNNNNN_MMMMMM.png`` (0/255): the toolkit's ``calc_gt_masks.py`` (object alone > 0;
  bop19 visibility against the depth PNG, delta 15 mm: the pixels that ``scene_gt_info.json`` counts).
- ``scene_gt_coco.json``: ``calc_gt_coco.py`` (amodal boxes from ``mask``, uncompressed RLE of ``mask_visib``,
  ``ignore`` = visib_fract < 0.1, ids from 1 per scene; the toolkit's ``save_json`` layout), with a fixed date
  (``COCO_DATE``) where the toolkit writes the current time, so that reruns give the same bytes.
- ``detections_gt_boxes.json``: 2D detections in GDRNPP's ``test_bboxes`` layout (``{"scene/im": [{"bbox_est",
  "obj_id", "score", "time"}]}``): per GT instance with a non-empty visible mask its visible-mask box, score 1.0,
  time 0.0: stand-ins for a detector's output (no detector ran).

This second step reads the poses and depth from the files, as the toolkit's scripts do, so that it matches the
committed depth PNGs and poses even where this platform's float rounding would regenerate them 1 ulp apart.

Everything comes from ``numpy.random.default_rng(SEED)``, so rerunning gives the same files.
"""

from __future__ import annotations

import colorsys
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
TABLE_RGB = (128, 128, 128)
COCO_DATE = "2026-12-05 00:00:00.000000"  # calc_gt_coco.py writes the current time here
MAX_PIXEL_DIFF = 2  # mask_visib vs the committed px_count_visib (see add_image_files)


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


def gt_info(models, gts, depth_mm: np.ndarray, masks: list | None = None) -> list[dict]:
    """Toolkit ``calc_gt_info.py`` for one image (bop19 visibility, delta 15). ``masks`` receives per GT instance
    the two masks of ``calc_gt_masks.py`` (object alone > 0, its visible part), from the same renders."""
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
        if masks is not None:
            masks.append((d_gt > 0, visib))
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


# ------------------------------------------------------------------------------------------ image files


def object_colour(obj_id: int) -> tuple[int, int, int]:
    """A fixed flat colour per object id (hues a golden angle apart)."""
    r, g, b = colorsys.hsv_to_rgb((obj_id * 0.618034) % 1.0, 0.75, 0.9)
    return round(255 * r), round(255 * g), round(255 * b)


def mask_box(mask: np.ndarray) -> list[int]:
    """pycoco_utils ``bbox_from_binary_mask``: [x, y, w, h], pixels inclusive."""
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def mask_rle(mask: np.ndarray) -> dict:
    """pycoco_utils ``binary_mask_to_rle``: column-major run lengths, starting with a background run."""
    flat = mask.ravel(order="F")
    change = np.flatnonzero(np.concatenate([[True], flat[:-1] != flat[1:], [True]]))
    return {"counts": ([0] if flat[0] else []) + np.diff(change).tolist(), "size": list(mask.shape)}


def save_json_like_toolkit(path: Path, content: dict) -> None:
    """bop_toolkit ``inout.save_json`` of a dict: sorted keys, one ``json.dumps(sort_keys=True)`` line each."""
    path.write_text("{\n" + ",\n".join(f'  "{k}": {json.dumps(v, sort_keys=True)}' for k, v in sorted(content.items()))
                    + "\n}")


def flat_rgb(models, gts: list[dict]) -> np.ndarray:
    """(H, W, 3) uint8: the nearest object's colour at each pixel (the table never occludes: objects rest on it)."""
    meshes = [(torch.from_numpy(models[g["obj_id"]][0]), torch.from_numpy(models[g["obj_id"]][1])) for g in gts]
    Rs = torch.tensor([g["cam_R_m2c"] for g in gts], dtype=torch.float64).reshape(-1, 3, 3)
    ts = torch.tensor([g["cam_t_m2c"] for g in gts], dtype=torch.float64).reshape(-1, 3)
    _, labels = render_scene_depth(meshes, Rs, ts, torch.from_numpy(K), H, W, return_labels=True)
    palette = np.array([object_colour(g["obj_id"]) for g in gts] + [TABLE_RGB], dtype=np.uint8)
    return palette[labels.numpy()]  # label -1 (no object) -> the last entry


def add_image_files(out: Path) -> None:
    """rgb/, mask/, mask_visib/, scene_gt_coco.json per scene and detections_gt_boxes.json, from the sample's
    scene_gt.json, scene_gt_info.json and depth PNGs (see the module docstring)."""
    models, _ = make_models(np.random.default_rng(SEED))  # the meshes the depth was rendered from (float64)
    categories = [{"id": o, "name": str(o), "supercategory": "ycbv"} for o in sorted(models)]
    info = {"contributor": "", "date_created": COCO_DATE + "+00:00", "description": "ycbv_test",
            "url": "https://github.com/thodan/bop_toolkit", "version": "0.1.0", "year": int(COCO_DATE[:4])}
    detections = {}
    for scene_id, im_ids in SCENES.items():
        sdir = out / "test" / f"{scene_id:06d}"
        scene_gt = json.loads((sdir / "scene_gt.json").read_text())
        scene_info = json.loads((sdir / "scene_gt_info.json").read_text())
        scale = json.loads((sdir / "scene_camera.json").read_text())
        for folder in ("rgb", "mask", "mask_visib"):
            shutil.rmtree(sdir / folder, ignore_errors=True)
            (sdir / folder).mkdir()
        coco = {"annotations": [], "categories": categories, "images": [], "info": info, "licenses": []}
        ann_id = 1
        for im_id in im_ids:
            gts, infos = scene_gt[str(im_id)], scene_info[str(im_id)]
            depth_mm = np.asarray(Image.open(sdir / "depth" / f"{im_id:06d}.png")).astype(np.float32) * np.float32(
                scale[str(im_id)]["depth_scale"])
            masks: list[tuple[np.ndarray, np.ndarray]] = []
            for j, (mine, theirs) in enumerate(zip(gt_info(models, gts, depth_mm, masks), infos)):
                # the committed counts came from an earlier state of the rasteriser: edge pixels may differ
                if abs(mine["px_count_visib"] - theirs["px_count_visib"]) > MAX_PIXEL_DIFF:
                    raise RuntimeError(f"scene {scene_id} image {im_id} GT {j}: px_count_visib "
                                       f"{theirs['px_count_visib']} in scene_gt_info.json, {mine['px_count_visib']} "
                                       "in mask_visib")
            Image.fromarray(flat_rgb(models, gts)).save(sdir / "rgb" / f"{im_id:06d}.png", optimize=True)
            coco["images"].append({"coco_url": "", "date_captured": COCO_DATE, "file_name": f"rgb/{im_id:06d}.png",
                                   "flickr_url": "", "height": H, "id": im_id, "license": 1, "width": W})
            dets = []
            for j, (g, inf, (full, visib)) in enumerate(zip(gts, infos, masks)):
                for folder, m in (("mask", full), ("mask_visib", visib)):
                    Image.fromarray(m.astype(np.uint8) * 255).save(sdir / folder / f"{im_id:06d}_{j:06d}.png",
                                                                   optimize=True)
                if not visib.any():
                    continue
                dets.append({"bbox_est": mask_box(visib), "obj_id": g["obj_id"], "score": 1.0, "time": 0.0})
                if not full.any():
                    continue
                coco["annotations"].append({
                    "area": int(visib.sum()), "bbox": mask_box(full), "category_id": g["obj_id"], "height": H,
                    "id": ann_id, "ignore": bool(inf["visib_fract"] < 0.1), "image_id": im_id, "iscrowd": 0,
                    "segmentation": mask_rle(visib), "width": W})
                ann_id += 1
            detections[f"{scene_id}/{im_id}"] = dets
        save_json_like_toolkit(sdir / "scene_gt_coco.json", coco)
    (out / "detections_gt_boxes.json").write_text(
        "{\n" + ",\n".join(f'  "{k}": {json.dumps(d, sort_keys=True)}' for k, d in detections.items()) + "\n}\n")


# ------------------------------------------------------------------------------------------ main


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
    add_image_files(out)
    print(f"wrote {out}: {len(targets)} targets")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--image-files"]
    target = Path(args[0]) if args else REPO / "bench" / "data" / "samples" / "ycbv"
    if "--image-files" in sys.argv[1:]:
        add_image_files(target)
        print(f"wrote the RGB, mask, COCO and detection files of {target}")
    else:
        main(target)
