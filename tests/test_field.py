"""The field's headline results (issue #20): catapult, edge of stability, fractal boundary —
each against an answer derived here, independently of the code under test."""

import jax
import numpy as np
import pytest

from gdstab import boundary, flow, sharpness
from gdstab.experiments import field_catapult as fc
from gdstab.experiments import field_eos as fe
from gdstab.experiments import field_fractal as ff


def _uv_recurrence(u, v, eta, steps):
    """GD on 1/2 (u.v / sqrt(m))^2 written out by hand: the residual and the curvature."""
    m = u.size
    r, lam = [], []
    for _ in range(steps + 1):
        f = u @ v / np.sqrt(m)
        r.append(f)
        lam.append((u @ u + v @ v) / m)
        u, v = u - eta * f * v / np.sqrt(m), v - eta * f * u / np.sqrt(m)
    return np.array(r), np.array(lam)


def test_uv_model_obeys_the_closed_form_recurrences():
    """r' = r (1 - eta lam + eta^2 r^2 / m) and lam' = lam + eta r^2 (eta lam - 4) / m, the
    identities the catapult target's thresholds rest on, along GD of the gdstab problem."""
    m = 50
    p = fc.uv_problem(m)
    with jax.enable_x64(True):
        th0 = np.asarray(p.init(jax.random.key(3), 1), dtype=np.float64)[0]
        lam0 = fc.uv_curvature(th0, m)
        ds = sharpness.track_sharpness(p, th0, 3.0 / lam0, steps=12, every=1, keep_iterates=True)
    th = ds.theta.values
    r = np.einsum("ij,ij->i", th[:, :m], th[:, m:]) / np.sqrt(m)
    lam = fc.uv_curvature(th, m)
    eta = 3.0 / lam0
    np.testing.assert_allclose(r[1:], r[:-1] * (1 - eta * lam[:-1] + eta ** 2 * r[:-1] ** 2 / m), rtol=1e-9)
    np.testing.assert_allclose(lam[1:], lam[:-1] + eta * r[:-1] ** 2 * (eta * lam[:-1] - 4) / m, rtol=1e-9)
    hand_r, hand_lam = _uv_recurrence(th0[:m], th0[m:], eta, 12)
    np.testing.assert_allclose(r, hand_r, rtol=1e-9)
    np.testing.assert_allclose(ds.loss.values, 0.5 * hand_r ** 2, rtol=1e-9)


def test_uv_thresholds_found_by_the_engine_match_2_and_4_over_lambda0():
    """The lazy threshold: the loss first rises at step 1 iff |1 - eta lam0 + eta^2 f0^2 / m| > 1,
    i.e. eta > 2 / (lam0 - eta f0^2 / m) (solved here as a quadratic), which tends to 2 / lam0;
    the divergence threshold: lam grows iff eta lam > 4, exactly, at any width."""
    m = 200
    r = fc.uv_thresholds(m, steps=4000, seed=1)
    lam0, f0 = r["lambda0"], r["f0"]
    # eta^2 f0^2 / m - eta lam0 + 2 = 0, the smaller root
    a, b, c = f0 ** 2 / m, -lam0, 2.0
    exact_lazy = (-b - np.sqrt(b * b - 4 * a * c)) / (2 * a)
    lo, hi = r["lazy"]["bracket"]
    assert lo <= exact_lazy <= hi * (1 + 1e-12)
    assert abs(r["lazy"]["relative_error"]) < 2 * f0 ** 2 / (lam0 * m) + 1e-4  # the finite-width shift
    lo, hi = r["divergence"]["bracket"]
    assert lo <= 4.0 / lam0 <= hi
    assert r["lazy"]["predicate_monotone_in_eta"] and r["divergence"]["predicate_monotone_in_eta"]
    assert r["undecided_runs"] == 0


def test_catapult_key_numbers_tell_lazy_catapult_and_divergence_apart():
    c = fc._Catapult(widths=(100, 400), steps=2000, figure_width=200, figure_c=(1.5, 3.0, 4.5), mlp_samples=3,
                     mlp_c=(1.0, 3.0), run_steps=30)
    ds = fc.compute_catapult("small", config=c)
    k = fc.key_numbers_catapult(ds)
    runs = k["catapult_uv_runs"]["value"]
    assert not runs["c=1.5"]["loss_rose"] and not runs["c=1.5"]["diverged"]
    assert runs["c=3"]["loss_rose"] and not runs["c=3"]["diverged"]
    assert runs["c=3"]["curvature_eta_over_2_at_end"] < 1  # the curvature fell below 2/eta
    assert runs["c=4.5"]["diverged"]
    th = k["catapult_uv_thresholds"]["value"]["m=400"]
    assert abs(th["divergence"]["relative_error"]) < 1e-3 and abs(th["lazy"]["relative_error"]) < 1e-2
    assert set(k["catapult_mlp"]["value"]) == {"c=1", "c=3"}
    assert k["catapult_uv_runs"]["reproduced"] and k["catapult_uv_thresholds"]["reproduced"]


def test_eos_phase_starts_at_the_first_arrival():
    r = np.array([0.5, 0.8, np.nan, 0.99, 1.0, 1.2, 0.95, 1.01])
    assert sharpness.eos_onset(r) == 4
    assert sharpness.eos_onset(np.array([0.2, 0.9])) == -1
    assert sharpness.eos_onset(r, 0.9) == 3  # Adam's arrival level (optimizer_dynamics.EOS_ARRIVAL)


def test_eos_on_digits_small_run_hovers_at_2_over_eta():
    """A shortened run of the eos target (fewer digits and steps): the sharpness reaches 2/eta by
    progressive sharpening (it starts well below), its median over the EoS phase lies in the band,
    and GD's distance to the flow is small before the onset."""
    c = fe._Eos(etas=(0.8,), samples=20, width=16, depth=2, steps=600, every=20, init_scale=0.5)
    ds = fe.compute_eos("small", config=c)
    row = fe.key_numbers_eos(ds)["eos_sharpness_ratio"]["value"]["eta=0.8"]
    assert ds.attrs["lambda0"] * 0.8 / 2 < 0.9  # starts below the edge
    assert row["reached"], row
    assert fe.RATIO_BAND[0] <= row["median_ratio"] <= fe.RATIO_BAND[1], row
    k = sharpness.eos_onset(ds.ratio.values[0])
    assert np.all(ds.flow_distance.values[0, :k] < ds.attrs["flow_rtol"])


def test_flow_distance_is_relative_to_the_flow_norm():
    gd = np.array([[3.0, 4.0], [np.inf, 0.0]])
    fl = np.array([[0.0, 0.0], [1.0, 0.0]])
    d, rel = flow.flow_distance(gd, fl)
    assert d[0] == 5.0 and rel[0] == 5.0 and np.isinf(d[1])


def _straight(side):
    L = np.zeros((side, side), dtype=int)
    L[: side // 3] = 1
    return L


@pytest.mark.parametrize("side", [72, 96, 128])
def test_box_sizes_tile_the_map_so_a_straight_boundary_has_dimension_one(side):
    """A straight boundary crossing the map: with box sizes that divide the side, N(s) = side/s
    exactly, hence D = 1 (a size that does not divide adds a partial edge box, biasing it low)."""
    r = boundary.boundary_dimension(_straight(side))
    assert r.exact_tiling
    assert all(side % s == 0 for s in r.box_sizes)
    np.testing.assert_allclose(r.box_counts, side / r.box_sizes)
    assert abs(r.dimension - 1) < 1e-9


def test_a_side_with_few_divisors_falls_back_to_the_ladder_and_says_so():
    r = boundary.boundary_dimension(_straight(64))  # divisors 2, 4, 8 only: fewer than 4 scales
    assert not r.exact_tiling and r.summary()["exact_tiling"] is False
    assert r.dimension < 1  # the partial edge boxes' bias the docstring describes


def test_fractal_pipeline_on_the_smooth_linear_control_gives_one():
    """The zoom pipeline on the linear model: its boundary (spectral radius of I - diag(eta) H = 1)
    is smooth, so every level's interval holds 1; and every zoom window is centred on a boundary
    pixel of the previous map, 8 times narrower."""
    c = ff._Fractal(width=16, d_in=4, side=48, levels=2, zoom=8.0, steps=400, window=(1.5, 3.5, 1.5, 3.5),
                    linear_window=(-1.0, 1.0, -1.0, 1.0))
    p = ff.linear_problem(c.d_in)
    with jax.enable_x64(True):
        th0 = np.asarray(p.init(jax.random.key(0), 1), dtype=np.float64)[0]
    maps = ff.zoom_windows(p, c.linear_window, c, th0)
    assert len(maps) == 3
    for (w, ds), (w2, _) in zip(maps, maps[1:]):
        assert np.isclose((w[1] - w[0]) / (w2[1] - w2[0]), 8.0)
        div = ds.status.values == ff.DIVERGED
        assert 0 < div.mean() < 1
    for _, ds in maps:
        r = boundary.boundary_dimension((ds.status.values == ff.DIVERGED).astype(int))
        assert r.status == "ok" and r.interval[0] <= 1 <= r.interval[1], r.summary()


def test_linear_control_divergence_matches_the_spectral_radius():
    """Independent check of the linear control's classification: GD on a quadratic with per-group
    step sizes diverges iff the spectral radius of I - D H exceeds 1 (H the dense Hessian here)."""
    p = ff.linear_problem(4)
    with jax.enable_x64(True):
        th0 = np.asarray(p.init(jax.random.key(0), 1), dtype=np.float64)[0]
        H = np.asarray(jax.hessian(p.loss)(th0))
    from gdstab.hypermaps import hyperparameter_map

    x = 10.0 ** np.linspace(-1, 1, 9)
    ds = hyperparameter_map(p, ("lr:w0", x), ("lr:w1", x), eta=1.0, theta0=th0, steps=3000)
    for i, e1 in enumerate(x):
        for j, e0 in enumerate(x):
            D = np.diag([e0] * 4 + [e1])
            rho = np.max(np.abs(np.linalg.eigvals(np.eye(5) - D @ H)))
            if abs(rho - 1) > 1e-3:
                assert (ds.status.values[i, j] == ff.DIVERGED) == (rho > 1), (e0, e1, rho)


def test_catapult_phase_check_fails_when_a_phase_is_wrong():
    good = {"c=1.5": {"loss_rose": False, "diverged": False, "curvature_eta_over_2_at_end": 0.7},
            "c=3": {"loss_rose": True, "diverged": False, "curvature_eta_over_2_at_end": 0.2},
            "c=4.2": {"loss_rose": True, "diverged": True, "curvature_eta_over_2_at_end": 9.0}}
    assert fc._phases_hold(good, 4.0)
    bad = dict(good, **{"c=3": {"loss_rose": True, "diverged": False, "curvature_eta_over_2_at_end": 1.2}})
    assert not fc._phases_hold(bad, 4.0)
    assert not fc._phases_hold(dict(good, **{"c=1.5": dict(good["c=3"])}), 4.0)
