import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdstab.stats import Z95, wilson_interval


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_is_the_root_pair_of_the_score_inequality(kn):
    k, n = kn
    # the interval is {p : (k/n - p)^2 <= z^2 p (1 - p) / n}: roots of a quadratic in p
    ph, z2 = k / n, Z95**2
    a, b, c = 1 + z2 / n, -(2 * ph + z2 / n), ph * ph
    roots = np.sort(np.roots([a, b, c]).real)
    p, lo, hi = wilson_interval(k, n)
    assert p == ph
    assert lo == pytest.approx(max(0.0, roots[0]), abs=1e-9)
    assert hi == pytest.approx(min(1.0, roots[1]), abs=1e-9)
    assert 0.0 <= lo <= p <= hi <= 1.0


def test_wilson_edges():
    assert wilson_interval(0, 10)[1] == 0.0
    assert wilson_interval(10, 10)[2] == 1.0
    p, lo, hi = wilson_interval(0, 0)
    assert np.isnan(p) and (lo, hi) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_relative_spread():
    import math

    from gdstab.stats import relative_spread

    assert relative_spread([2.0, 3.0, 2.5]) == 0.5
    assert relative_spread([4.0, float("inf"), 4.0]) == 0.0  # non-finite values are left out
    assert math.isnan(relative_spread([1.0])) and math.isnan(relative_spread([0.0, 1.0]))
