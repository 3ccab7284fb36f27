"""OpenMM's other forms: custom forces (Lepton expressions through sympy), CMAP and OBC implicit
solvent, each equal to OpenMM's Reference platform in energy and forces, exported back
exactly, with parameter gradients equal to finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import openmm
import pytest

from chronograd.errors import UnsupportedForceError
from chronograd.interop.openmm import from_openmm, to_openmm
from chronograd.potentials.expressions import UnsupportedExpressionError, parse
from chronograd.system import structure as st

jax.config.update("jax_enable_x64", True)

N = 12


def _positions(seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.2, (N, 3))


def _reference(system, x, box=None):
    """{force class name: energy} and total forces of OpenMM's Reference platform."""
    for k, f in enumerate(system.getForces()):
        f.setForceGroup(k)
    ctx = openmm.Context(system, openmm.VerletIntegrator(1e-3),
                         openmm.Platform.getPlatformByName("Reference"))
    if box is not None:
        ctx.setPeriodicBoxVectors(*box)
    ctx.setPositions(x)
    energies = [ctx.getState(getEnergy=True, groups={k}).getPotentialEnergy()._value
                for k in range(system.getNumForces())]
    state = ctx.getState(getEnergy=True, getForces=True)
    return energies, state.getPotentialEnergy()._value, state.getForces(asNumpy=True)._value


def _custom_system():
    s = openmm.System()
    for _ in range(N):
        s.addParticle(12.0)
    b = openmm.CustomBondForce("D*(1-exp(-a*(r-r0)))^2 + lam*r; lam=0.3*g")
    b.addGlobalParameter("g", 1.5)
    for name in ("D", "a", "r0"):
        b.addPerBondParameter(name)
    b.addBond(0, 1, [100.0, 10.0, 0.2])
    b.addBond(2, 3, [50.0, 8.0, 0.3])
    s.addForce(b)
    a = openmm.CustomAngleForce("0.5*k*(theta-t0)^2 + step(theta-1)*cos(theta)")
    a.addPerAngleParameter("k")
    a.addPerAngleParameter("t0")
    a.addAngle(0, 1, 2, [100.0, 1.9])
    a.addAngle(3, 4, 5, [80.0, 2.0])
    s.addForce(a)
    t = openmm.CustomTorsionForce(
        "k*(1+cos(2*theta-ph)) + 0.1*min(theta, 0.5)^2 + select(step(theta), 1, 2)")
    t.addPerTorsionParameter("k")
    t.addPerTorsionParameter("ph")
    t.addTorsion(0, 1, 2, 3, [5.0, 0.3])
    t.addTorsion(4, 5, 6, 7, [3.0, 1.0])
    s.addForce(t)
    e = openmm.CustomExternalForce("k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
    for name in ("k", "x0", "y0", "z0"):
        e.addPerParticleParameter(name)
    e.addParticle(3, [10.0, 0.1, 0.2, 0.3])
    e.addParticle(7, [20.0, 0.5, 0.5, 0.5])
    s.addForce(e)
    nb = openmm.CustomNonbondedForce(
        "4*eps*((sig/r)^12-(sig/r)^6) + 138.935456*q1*q2/r + scale*c(type1, type2);"
        " sig=0.5*(sigma1+sigma2); eps=sqrt(epsilon1*epsilon2)")
    for name in ("sigma", "epsilon", "q", "type"):
        nb.addPerParticleParameter(name)
    nb.addGlobalParameter("scale", 0.5)
    nb.addTabulatedFunction("c", openmm.Discrete2DFunction(2, 2, [0.1, -0.2, -0.2, 0.3]))
    for i in range(N):
        nb.addParticle([0.1 + 0.01 * i, 0.5, 0.1 * (-1) ** i, i % 2])
    nb.addExclusion(0, 1)
    nb.addExclusion(2, 3)
    nb.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffNonPeriodic)
    nb.setCutoffDistance(0.9)
    nb.setUseSwitchingFunction(True)
    nb.setSwitchingDistance(0.7)
    s.addForce(nb)
    return s


def _check_against_openmm(omm, x, box=None, tol=1e-9):
    energies, total, forces = _reference(omm, x, box)
    system = from_openmm(omm)
    terms = system.energy_terms(x, box)
    for term, ref in zip(system.terms, energies, strict=True):
        mine = sum(terms[name] for name in term.term_names())
        assert mine == pytest.approx(ref, rel=tol, abs=tol), term.name
    e, f = system.energy_and_forces(x, box)
    assert e == pytest.approx(total, rel=tol, abs=tol)
    np.testing.assert_allclose(f, forces, atol=1e-7 * max(1.0, np.abs(forces).max()))
    back = _reference(to_openmm(system), x, box)[1]
    assert back == pytest.approx(total, rel=1e-12, abs=1e-10)
    return system


def test_custom_forces_equal_openmm_and_round_trip():
    system = _check_against_openmm(_custom_system(), _positions())
    kinds = [t.kind for t in system.terms]
    assert kinds == ["custom_bond", "custom_angle", "custom_torsion", "custom_external",
                     "custom_nonbonded"]


def test_global_per_item_and_table_parameters_are_differentiable():
    system = from_openmm(_custom_system())
    x = jnp.asarray(_positions())
    structure = system.structure

    def energy(params):
        return st.total_energy(structure, x, None, params)

    grad = jax.grad(energy)(system.params)
    for term, key in (("custom_bond", "g"), ("custom_nonbonded", "scale"),
                      ("custom_angle", "t0"), ("custom_nonbonded", "table_c"),
                      ("custom_nonbonded", "sigma")):
        value = np.asarray(system.params[term][key], np.float64)
        direction = np.random.default_rng(1).normal(size=value.shape)
        h = 1e-6

        def shifted(s, term=term, key=key, value=value, direction=direction):
            p = jax.tree_util.tree_map(lambda v: v, system.params)
            p[term] = dict(p[term], **{key: jnp.asarray(value + s * direction)})
            return float(energy(p))

        fd = (shifted(h) - shifted(-h)) / (2 * h)
        analytic = float(np.sum(np.asarray(grad[term][key]) * direction))
        assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-8), (term, key)


def test_periodic_custom_nonbonded_and_external_periodicdistance():
    box = np.diag([2.0, 2.1, 2.2])
    s = openmm.System()
    for _ in range(N):
        s.addParticle(1.0)
    s.setDefaultPeriodicBoxVectors(*box)
    nb = openmm.CustomNonbondedForce("eps*exp(-r^2/w^2); eps=sqrt(e1*e2); w=0.5*(w1+w2)")
    nb.addPerParticleParameter("e")
    nb.addPerParticleParameter("w")
    for i in range(N):
        nb.addParticle([1.0 + 0.1 * i, 0.3 + 0.01 * i])
    nb.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
    nb.setCutoffDistance(0.9)
    nb.addInteractionGroup(list(range(6)), list(range(4, N)))
    s.addForce(nb)
    ext = openmm.CustomExternalForce("k*periodicdistance(x, y, z, x0, y0, z0)^2")
    for name in ("k", "x0", "y0", "z0"):
        ext.addPerParticleParameter(name)
    ext.addParticle(0, [5.0, 1.9, 0.1, 0.1])
    s.addForce(ext)
    x = _positions(2) * 1.6
    _check_against_openmm(s, x, box)


def _cmap_system(rng):
    s = openmm.System()
    for _ in range(N):
        s.addParticle(12.0)
    cmap = openmm.CMAPTorsionForce()
    for size in (6, 8):
        cmap.addMap(size, rng.normal(0.0, 5.0, size * size).tolist())
    cmap.addTorsion(0, 0, 1, 2, 3, 1, 2, 3, 4)
    cmap.addTorsion(1, 4, 5, 6, 7, 5, 6, 7, 8)
    cmap.addTorsion(1, 8, 9, 10, 11, 9, 10, 11, 0)
    s.addForce(cmap)
    return s


def test_cmap_equals_openmm_bicubic_spline_and_map_gradients():
    rng = np.random.default_rng(3)
    omm = _cmap_system(rng)
    for seed in range(4):  # many patches of both maps
        system = _check_against_openmm(omm, _positions(10 + seed))
    x = jnp.asarray(_positions(10))
    grad = jax.grad(lambda p: st.total_energy(system.structure, x, None, p))(system.params)
    grid = np.asarray(system.params["cmap_torsion"]["map_1"])
    direction = rng.normal(size=grid.shape)

    def energy(s):
        p = {"cmap_torsion": dict(system.params["cmap_torsion"],
                                  map_1=jnp.asarray(grid + s * direction))}
        return float(st.total_energy(system.structure, x, None, p))

    fd = (energy(1e-5) - energy(-1e-5)) / 2e-5
    assert float(np.sum(grad["cmap_torsion"]["map_1"] * direction)) == pytest.approx(fd,
                                                                                    rel=1e-7)


@pytest.mark.parametrize("method", [0, 1, 2])
def test_gbsa_obc_equals_openmm(method):
    rng = np.random.default_rng(4)
    box = np.diag([2.5, 2.5, 2.5])
    s = openmm.System()
    s.setDefaultPeriodicBoxVectors(*box)
    gb = openmm.GBSAOBCForce()
    gb.setNonbondedMethod(method)
    gb.setCutoffDistance(1.0)
    gb.setSolventDielectric(78.5)
    gb.setSoluteDielectric(2.0)
    for _ in range(N):
        s.addParticle(12.0)
        gb.addParticle(float(rng.normal(0, 0.4)), float(rng.uniform(0.12, 0.2)),
                       float(rng.uniform(0.7, 0.9)))
    s.addForce(gb)
    x = rng.uniform(0, 1.0, (N, 3))
    x[1] = x[0] + [0.05, 0.0, 0.0]  # one atom buried inside another (the Tinker branch)
    _check_against_openmm(s, x, box if method == 2 else None)


def test_expression_errors_name_the_function_variable_or_text():
    with pytest.raises(UnsupportedExpressionError, match="function 'bessel'"):
        parse("bessel(r)", "term 'x'")
    with pytest.raises(UnsupportedExpressionError, match="cycle"):
        parse("a; a=b; b=a")
    with pytest.raises(UnsupportedExpressionError, match="cannot read '@'"):
        parse("r@2")
    with pytest.raises(UnsupportedExpressionError, match="cannot read '\\.'"):
        parse("r.__class__")
    s = openmm.System()
    s.addParticle(1.0)
    s.addParticle(1.0)
    f = openmm.CustomBondForce("k*r^2 + q")
    f.addPerBondParameter("k")
    f.addBond(0, 1, [1.0])
    s.addForce(f)
    with pytest.raises(UnsupportedForceError, match="CustomBondForce .force index 0.*'q'"):
        from_openmm(s)
    f2 = openmm.CustomNonbondedForce("r*t(r)")
    f2.addTabulatedFunction("t", openmm.Continuous1DFunction([0.0, 1.0, 2.0], 0.0, 1.0))
    f2.addParticle([])
    f2.addParticle([])
    s2 = openmm.System()
    s2.addParticle(1.0)
    s2.addParticle(1.0)
    s2.addForce(f2)
    with pytest.raises(UnsupportedForceError, match="'t' .Continuous1DFunction"):
        from_openmm(s2)


@pytest.mark.slow
@pytest.mark.parametrize("files", [["charmm36.xml"], ["amber19-all.xml"],
                                   ["amber99sb.xml", "amber99_obc.xml"]])
def test_protein_force_fields_with_cmap_nbfix_and_implicit_solvent(files):
    """Villin (582 atoms, no water) with CHARMM36 (CMAP, NBFIX tables, Urey-Bradley,
    harmonic impropers), amber19 ff19SB (CMAP) and amber99sb + OBC2: every force imports and
    equals OpenMM."""
    from pathlib import Path

    from openmm import app

    pdb = app.PDBFile(str(Path(__file__).parents[1] / "data/villin/villin_solvated.pdb"))
    model = app.Modeller(pdb.topology, pdb.positions)
    model.deleteWater()
    model.delete([r for r in model.topology.residues() if r.name.upper() in ("NA", "CL")])
    x = np.array(model.getPositions().value_in_unit(openmm.unit.nanometer))
    omm = app.ForceField(*files).createSystem(model.topology, nonbondedMethod=app.NoCutoff)
    omm.removeForce([type(f).__name__ for f in omm.getForces()].index("CMMotionRemover"))
    _check_against_openmm(omm, x, tol=1e-8)
