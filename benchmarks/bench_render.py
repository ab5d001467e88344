"""Speed of the software rasterizer on the Surrey Face Model, against trimesh ray casting.

Renders the SFM mean face (3448 vertices, 6736 triangles) at 224x224 with the kit's
frontal camera and times, as medians over repeated runs (``time.perf_counter``):

* ``rasterize``    -- z-buffer, triangle ids, perspective-correct barycentrics
* ``render``       -- RGB image (SH-lit Gouraud shading) + depth + mask + vertex visibility
* ``render_depth`` -- the depth-only fast path

The peer is ``trimesh``'s ray casting (``mesh.ray.intersects_location``, one ray
through each pixel centre, first hit only) computing the same depth map; the
table reports the speed-up over it and how well the two depth maps agree.
trimesh's default (embree-less) intersector needs the ``rtree`` package; without
it the peer is reported as unavailable.

Usage: ``python benchmarks/bench_render.py [--repeats 50] [--size 224]``.
Writes ``benchmarks/results/render.json``.
"""
from __future__ import annotations

import _common

_common.pin_threads(default="2")

import numpy as np  # noqa: E402

import dualface_lite as df  # noqa: E402
from dualface_lite.camera import perspective_camera  # noqa: E402
from dualface_lite.render import Lighting, rasterize, render, render_depth  # noqa: E402


median_ms = _common.median_ms


def trimesh_depth(camera, vertices, triangles):
    """Depth map by casting one ray per pixel centre with trimesh (the peer)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=triangles, process=False)
    H, W = camera.height, camera.width
    j, i = np.meshgrid(np.arange(W), np.arange(H))
    origins, dirs = camera.pixel_rays(np.stack([j, i], axis=-1).reshape(-1, 2))   # one ray per pixel centre
    loc, ray, _ = mesh.ray.intersects_location(origins, dirs, multiple_hits=False)
    depth = np.full(H * W, np.inf)
    depth[ray] = camera.depth(loc)
    return depth.reshape(H, W).astype(np.float32)


def main(argv=None):
    ap = _common.parser(__doc__, "render", threads="2")
    ap.add_argument("--repeats", type=int, default=50, help="timed runs of each kit function")
    ap.add_argument("--peer-repeats", type=int, default=3, help="timed runs of the (slow) peer")
    ap.add_argument("--size", type=int, default=224, help="image width = height in pixels")
    args = ap.parse_args(argv)

    m = df.load_model()
    V, F = np.asarray(m.mean, dtype=np.float32), np.asarray(m.triangles)
    cam = perspective_camera(args.size, args.size, fov=12, distance=1200)
    light = Lighting.directional(direction=(0.3, 0.4, 1.0))

    frags = rasterize(cam, V, F)
    t_rast = median_ms(lambda: rasterize(cam, V, F), args.repeats)
    t_render = median_ms(lambda: render(cam, V, F, lighting=light), args.repeats)
    t_depth = median_ms(lambda: render_depth(cam, V, F), args.repeats)

    peer = {"name": "trimesh ray casting (mesh.ray.intersects_location, one ray per pixel)"}
    try:
        import rtree  # noqa: F401  (trimesh's embree-less intersector needs it)
        import trimesh

        peer["trimesh_version"] = trimesh.__version__
        ref = trimesh_depth(cam, V, F)
        peer["ms"] = median_ms(lambda: trimesh_depth(cam, V, F), args.peer_repeats, warmup=0)
        both = np.isfinite(ref) & frags.mask
        peer["mask_agreement"] = float(np.mean(np.isfinite(ref) == frags.mask))
        peer["median_abs_depth_diff_mm"] = float(np.median(np.abs(ref[both] - frags.depth[both])))
        peer["speedup_render_depth"] = peer["ms"] / t_depth
        peer["speedup_render"] = peer["ms"] / t_render
    except ImportError as e:
        peer["unavailable"] = f"{e} (pip install rtree)"

    result = {
        "image": f"{args.size}x{args.size}",
        "vertices": int(len(V)),
        "triangles": int(len(F)),
        "pixels_covered": int(frags.mask.sum()),
        "repeats": args.repeats,
        "median_ms": {"rasterize": t_rast, "render": t_render, "render_depth": t_depth},
        "target_ms_render": 25.0,
        "peer": peer,
        "machine": _common.machine_info(),
    }

    print(f"Software rasterizer, SFM mean face: {result['image']} px, {len(F)} triangles, "
          f"{result['pixels_covered']} pixels covered, median of {args.repeats} runs")
    print(f"{'what':<44}{'median ms':>12}")
    print(f"{'rasterize (z-buffer, ids, barycentrics)':<44}{t_rast:>12.2f}")
    print(f"{'render (RGB + depth + visibility)':<44}{t_render:>12.2f}")
    print(f"{'render_depth':<44}{t_depth:>12.2f}")
    if "ms" in peer:
        print(f"{'peer: trimesh ray casting (depth map)':<44}{peer['ms']:>12.2f}")
        print(f"speedup vs trimesh ray casting: {peer['speedup_render_depth']:.0f}x (render_depth), "
              f"{peer['speedup_render']:.0f}x (full render)")
        print(f"depth agreement with the peer: median |diff| {peer['median_abs_depth_diff_mm']:.2e} mm, "
              f"mask agreement {100 * peer['mask_agreement']:.2f} %")
    else:
        print(f"peer unavailable: {peer['unavailable']}")
    verdict = "meets" if t_render <= 25.0 else "MISSES"
    print(f"target: render <= 25 ms at 224x224 -> {verdict}" if args.size == 224 else "")

    _common.write_results(args.out, result)
    return result


if __name__ == "__main__":
    main()
