"""Observables against mdtraj on the same frames, and their derivatives against finite
differences."""

import jax
import jax.numpy as jnp
import mdtraj
import numpy as np
import pytest

import chronograd as cg
from chronograd import observables as obs
from chronograd.topology.boxes import water_box


@pytest.fixture(scope="module")
def water():
    mols, pos, box = water_box(2.0)
    system = cg.ForceField("openff-2.2.1.offxml").create_system(mols, box=box)
    top = mdtraj.Topology()
    for _ in mols:
        chain = top.add_chain()
        res = top.add_residue("HOH", chain)
        for el in ("O", "H", "H"):
            top.add_atom(el, mdtraj.element.get_by_symbol(el), res)
    traj = mdtraj.Trajectory(np.asarray(pos)[None], top)
    traj.unitcell_vectors = np.asarray(box)[None]
    return system, np.asarray(pos), np.asarray(box), traj


def test_geometry_matches_mdtraj(water):
    system, x, box, traj = water
    xb = jnp.asarray(x)
    assert float(obs.distance(0, 30)(xb, jnp.asarray(box))) == pytest.approx(
        float(mdtraj.compute_distances(traj, [[0, 30]], periodic=True)[0, 0]), abs=1e-5)
    assert float(obs.dihedral(1, 0, 3, 4)(xb, None)) == pytest.approx(
        float(mdtraj.compute_dihedrals(traj, [[1, 0, 3, 4]], periodic=False)[0, 0]), abs=1e-5)
    sel = np.arange(30)
    # mass-weighted centre and distances (mdtraj's compute_rg centres on the plain mean)
    m = np.asarray(system.masses)[sel]
    com = (m[:, None] * x[sel]).sum(0) / m.sum()
    rg_ref = np.sqrt((m * ((x[sel] - com) ** 2).sum(1)).sum() / m.sum())
    assert float(obs.radius_of_gyration(system.masses, sel)(xb, None)) == pytest.approx(
        rg_ref, rel=1e-12)
    assert float(obs.radius_of_gyration(None, sel)(xb, None)) == pytest.approx(
        float(mdtraj.compute_rg(traj.atom_slice(sel))[0]), abs=1e-5)
    rho = float(obs.density(system.masses)(xb, jnp.asarray(box)))
    assert rho == pytest.approx(float(np.sum(system.masses)) / 6.02214076e23
                                / (np.linalg.det(box) * 1e-21), rel=1e-12)


def test_smooth_rdf_matches_histogram(water):
    system, x, box, traj = water
    oxygens = np.arange(0, len(x), 3)
    r = np.linspace(0.22, 0.8, 59)
    g = obs.rdf(oxygens, oxygens, r, width=0.004)(jnp.asarray(x), jnp.asarray(box))
    pairs = traj.topology.select_pairs("name O", "name O")
    edges, g_md = mdtraj.compute_rdf(traj, pairs, r_range=(0.2, 0.82), bin_width=0.02)
    # a Gaussian kernel of width 4 pm against 2 pm-wide histogram bins, averaged over 10 pm
    smooth = np.interp(edges, r, np.asarray(g))
    win = 5
    a = np.convolve(smooth, np.ones(win) / win, "valid")
    b = np.convolve(g_md, np.ones(win) / win, "valid")
    assert np.max(np.abs(a - b)) < 0.25 * np.max(b)
    peak = r[np.argmax(np.asarray(g))]
    assert 0.26 < peak < 0.30  # the first O-O shell of water
    # differentiable in positions
    d = jax.grad(lambda y: obs.rdf(oxygens, oxygens, r)(y, jnp.asarray(box))[5])(jnp.asarray(x))
    assert np.all(np.isfinite(np.asarray(d)))


def test_noe_transform_and_finite_checks():
    x = jnp.array([[0.0, 0, 0], [0.3, 0, 0], [0.5, 0, 0]])
    inten = obs.noe_intensity([[0, 1], [0, 2]])(x, None)
    assert np.allclose(obs.noe_transform(inten), [0.3, 0.5])
    with pytest.raises(cg.InputError, match="non-finite value .* at index"):
        obs.check_finite([1.0, np.nan])
    with pytest.raises(cg.InputError, match="needs a periodic box"):
        obs.volume(x, None)


def test_observable_gradient_matches_finite_differences(water):
    system, x, box, traj = water
    rg = obs.radius_of_gyration(system.masses, np.arange(9))
    phi = obs.dihedral(1, 0, 3, 4)
    xb = jnp.asarray(x)
    for f in (rg, phi):
        g = jax.grad(lambda y, f=f: f(y, None))(xb)
        d = jnp.zeros_like(xb).at[4, 1].set(1.0)
        h = 1e-6
        fd = (f(xb + h * d, None) - f(xb - h * d, None)) / (2 * h)
        assert float(g[4, 1]) == pytest.approx(float(fd), rel=1e-6)
