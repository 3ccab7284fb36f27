import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from chronograd.errors import InputError
from chronograd.space.periodic import check_reduced_box, minimum_image, wrap_positions

TRICLINIC = np.array([[3.0, 0.0, 0.0], [1.0, 2.8, 0.0], [-1.2, 0.9, 2.6]])


def brute_force_minimum(dr, box):
    best = None
    for a, b, c in itertools.product(range(-2, 3), repeat=3):
        cand = dr + a * box[0] + b * box[1] + c * box[2]
        if best is None or np.linalg.norm(cand) < np.linalg.norm(best):
            best = cand
    return best


@pytest.mark.parametrize("box", [np.diag([2.0, 2.5, 3.0]), TRICLINIC])
def test_minimum_image_matches_search_over_images(box):
    rng = np.random.default_rng(0)
    dr = rng.uniform(-6, 6, size=(200, 3))
    got = np.asarray(minimum_image(jnp.asarray(dr), jnp.asarray(box)))
    # OpenMM's reduced-form rule is exact for distances below half the smallest width.
    half = 0.5 * min(np.diag(box))
    for d, g in zip(dr, got, strict=True):
        ref = brute_force_minimum(d, box)
        if np.linalg.norm(ref) < half:
            np.testing.assert_allclose(g, ref, atol=1e-12)
        # the result is always an image of the input
        frac = np.linalg.solve(box.T, d - g)
        np.testing.assert_allclose(frac, np.round(frac), atol=1e-9)


def test_wrap_positions_lands_in_primary_cell():
    rng = np.random.default_rng(1)
    x = rng.uniform(-10, 10, size=(100, 3))
    w = np.asarray(wrap_positions(jnp.asarray(x), jnp.asarray(TRICLINIC)))
    s = np.linalg.solve(TRICLINIC.T, w.T).T
    assert np.all(s >= -1e-12) and np.all(s < 1 + 1e-12)
    frac = np.linalg.solve(TRICLINIC.T, (x - w).T).T
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-9)


@pytest.mark.parametrize(
    "box, message",
    [
        (np.eye(2), "shape"),
        ([[1, 0.1, 0], [0, 1, 0], [0, 0, 1]], "reduced form"),
        ([[1, 0, 0], [0.9, 1, 0], [0, 0, 1]], "not reduced"),
        ([[np.nan, 0, 0], [0, 1, 0], [0, 0, 1]], "NaN"),
    ],
)
def test_bad_boxes_are_named(box, message):
    with pytest.raises(InputError, match=message):
        check_reduced_box(box)
