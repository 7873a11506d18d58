"""Boundary dimension and uncertainty exponent on shapes with known answers (issue #19, item 4)."""

import math

import numpy as np
import pytest

from gdstab import Problem
from gdstab._validation import InvalidParameterError
from gdstab.basins import BASIN_CODES, basin_map
from gdstab.boundary import boundary_dimension, map_labels

N = 1024


def _disc(n=N, cx=500.3, cy=520.7, r=380.0):
    y, x = np.mgrid[0:n, 0:n] + 0.5
    return ((x - cx) ** 2 + (y - cy) ** 2 < r * r).astype(int)


def _koch(level):
    """The Koch snowflake's vertices: each edge's middle third replaced by two sides of an
    outward equilateral triangle, ``level`` times, from a triangle."""
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, -math.sqrt(3) / 2], [0.0, 0.0]])
    c, s = 0.5, math.sqrt(3) / 2
    rot = np.array([[c, s], [-s, c]])  # d @ rot turns an edge by +60°: the bump points outwards
    for _ in range(level):
        a, b = pts[:-1], pts[1:]
        d = (b - a) / 3
        p1, p2 = a + d, a + 2 * d
        peak = p1 + d @ rot
        pts = np.concatenate([np.stack([a, p1, peak, p2], axis=1).reshape(-1, 2), pts[-1:]])
    return pts


def _snowflake(n=N, level=None):
    """The filled snowflake on an n x n raster, by default at the finest level whose edges are
    still >= 1 pixel (level 6 at 1024²: edges of 1.26 pixels; finer levels only add detail the
    raster cannot show: level 7 measured 1.222, level 6 1.275, against 1.262)."""
    from PIL import Image, ImageDraw

    level = int(math.log(0.9 * n) / math.log(3)) if level is None else level
    P = _koch(level)
    P = (P - P.min(axis=0)) / np.ptp(P, axis=0).max() * (0.9 * n) + 0.05 * n
    img = Image.new("L", (n, n), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in P], fill=1)
    return np.asarray(img).astype(int)


def test_a_circle_has_dimension_one():
    r = boundary_dimension(_disc())
    assert r.status == "ok" and r.classes == 2
    assert r.dimension == pytest.approx(1.0, abs=0.03)
    assert r.interval[0] <= 1.0 <= r.interval[1] and r.interval[1] - r.interval[0] < 0.1
    assert r.dimension_from_alpha == pytest.approx(1.0, abs=0.03)


def test_the_koch_snowflake_has_dimension_log4_over_log3():
    K = _snowflake()
    # the snowflake's area is 8/5 of its starting triangle's (the anti-snowflake's, bumps inwards, 2/5)
    area = 1.6 * math.sqrt(3) / 4 * (0.9 * N / np.ptp(_koch(6), axis=0).max()) ** 2
    # (the fill also takes about half of the 15 500 pixels the level-6 outline crosses: +1.2 %)
    assert K.sum() == pytest.approx(area, rel=0.03)
    r = boundary_dimension(K)
    want = math.log(4) / math.log(3)
    assert r.dimension == pytest.approx(want, abs=0.05)
    assert r.interval[0] <= want <= r.interval[1]
    assert r.dimension_from_alpha == pytest.approx(want, abs=0.05)
    smooth = boundary_dimension(_disc())
    assert r.dimension > smooth.interval[1]  # rougher than a circle, beyond the circle's interval


def test_pixel_noise_fills_the_plane():
    noise = (np.random.default_rng(0).random((256, 256)) < 0.5).astype(int)
    r = boundary_dimension(noise)
    assert r.dimension > 1.85 and r.dimension_from_alpha == pytest.approx(2.0, abs=0.01)


def test_a_smooth_gd_basin_boundary_has_dimension_one():
    """L = r²/2 + r⁴/4 (r = |θ|): GD is radial, θ -> (1 − η(1 + r²))θ, and converges iff
    η(1 + r²) < 2: the basin of the minimum at η = 0.5 is the disc r < √3."""
    p = Problem.from_expression("0.5*(x**2 + y**2) + 0.25*(x**2 + y**2)**2", min_value=0.0)
    # a window not centred on the minimum: a circle centred on a grid symmetric about it digitises
    # into long straight runs whose 2-4 pixel box counts fall below the power law (measured on
    # (-2.5, 2.5)²: 0.982, interval [0.960, 0.999]; the raster bias is stated in gdstab.boundary)
    ds = basin_map(p, 0.5, extent=(-2.3, 2.6, -2.45, 2.55), resolution=N, steps=400)
    labels = map_labels(ds)
    conv = ds.status.values == BASIN_CODES["converged"]
    a, b = np.meshgrid(ds.a.values, ds.b.values)
    inside = a * a + b * b < 3.0
    assert np.mean(conv == inside) > 0.995  # the map is the disc (pixels on the circle may stay undecided)
    r = boundary_dimension(labels)
    assert r.interval[0] <= 1.0 <= r.interval[1]
    assert r.dimension == pytest.approx(1.0, abs=0.03)


def test_a_single_class_has_no_dimension():
    r = boundary_dimension(np.ones((64, 64), dtype=int))
    assert r.status == "single class" and math.isnan(r.dimension) and math.isnan(r.alpha)
    assert r.summary()["dimension"] is None


def test_a_boundary_too_small_to_fit_is_a_status():
    L = np.zeros((64, 64), dtype=int)
    L[0, 0] = 1
    r = boundary_dimension(L)
    assert r.status == "too few boundary pixels" and math.isnan(r.dimension)


@pytest.mark.parametrize("labels, what", [
    (np.zeros(100, int), "2-D array"), (np.zeros((16, 64), int), "at least 32 pixels"),
    (np.where(_disc(64, 30, 30, 20) > 0, np.nan, 1.0), "finite class labels"),
    (np.full((64, 64), 0.5), "integer class labels"), (np.full((64, 64), "a"), "integer array"),
])
def test_bad_maps_are_refused_naming_the_parameter(labels, what):
    with pytest.raises(InvalidParameterError, match=f"'labels' parameter of boundary_dimension must be .*{what}"):
        boundary_dimension(labels)


def test_same_seed_same_interval_and_results_reported_with_their_widths():
    a = boundary_dimension(_disc(256, 120, 130, 90), seed=3)
    b = boundary_dimension(_disc(256, 120, 130, 90), seed=3)
    assert a.interval == b.interval and a.alpha_interval == b.alpha_interval
    s = a.summary()
    assert s["interval"][1] > s["interval"][0] and len(s["box_sizes"]) == len(s["box_counts"]) >= 4


def test_boundary_command_reads_a_stored_basin_map(tmp_path, capsys):
    import json

    from gdstab.cli import main
    from gdstab.results import save_dataset

    out = tmp_path / "b"
    assert main(["basin", "--problem", "hyperbola", "--eta", "0.5", "--resolution", "128", "--quiet", "--out",
                 str(out)]) == 0
    capsys.readouterr()
    assert main(["boundary", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["status"] == "ok" and s["shape"] == [128, 128] and s["map"].endswith("basin.zarr")
    assert s["interval"][0] < s["dimension"] < s["interval"][1] and s["eta"] == 0.5
    # a map with one class: the dimension is undefined, said so, no number invented
    import xarray as xr

    save_dataset(xr.Dataset({"status": (("b", "a"), np.ones((40, 40), np.int8))}), tmp_path / "one.zarr")
    assert main(["boundary", str(tmp_path / "one.zarr"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["status"] == "single class" and s["dimension"] is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["boundary", str(empty)]) == 2
    assert "'DIR_OR_MAP' parameter of gdstab boundary must be a .zarr map" in capsys.readouterr().err


def test_a_zoom_series_follows_the_boundary_into_nested_windows():
    """Three levels, each 4x smaller and centred on the previous level's boundary pixel nearest
    the requested centre; each level is a fresh map at full resolution (it equals basin_map of
    its own window), and the smooth disc boundary stays a boundary at every level."""
    from gdstab.basins import zoom_series

    p = Problem.from_expression("0.5*(x**2 + y**2) + 0.25*(x**2 + y**2)**2", min_value=0.0)
    maps = zoom_series(p, 0.5, extent=(-2.5, 2.5, -2.5, 2.5), levels=3, factor=4.0, center=(1.7, 0.3),
                       resolution=64, steps=400)
    assert [m.attrs["zoom_level"] for m in maps] == [0, 1, 2]
    for k in (1, 2):
        e0, e1 = maps[k - 1].attrs["extent"], maps[k].attrs["extent"]
        assert e1[1] - e1[0] == pytest.approx((e0[1] - e0[0]) / 4)
        c = np.array([(e1[0] + e1[1]) / 2, (e1[2] + e1[3]) / 2])
        assert abs(np.hypot(*c) - math.sqrt(3)) < (e0[1] - e0[0]) / 63  # centred on the circle r = √3, within a pixel
        assert len(np.unique(map_labels(maps[k]))) >= 2
    again = basin_map(p, 0.5, extent=tuple(maps[2].attrs["extent"]), resolution=64, steps=400)
    assert np.array_equal(again.status.values, maps[2].status.values)
    with pytest.raises(InvalidParameterError, match="'factor' parameter of zoom_series"):
        zoom_series(p, 0.5, factor=1.0)
    with pytest.raises(InvalidParameterError, match="'resolution' parameter of basin_map must be an int >= 2"):
        basin_map(p, 0.5, resolution=1)
