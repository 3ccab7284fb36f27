"""Real test systems built with OpenMM's own force fields and shipped structures, and OpenMM
reference energies (Reference platform, double precision) per term."""

from __future__ import annotations

import functools
import os

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u

OPENMM_DATA = os.path.join(os.path.dirname(app.__file__), "data")


@functools.cache
def water_box_topology(box_nm: float = 3.0):
    """A TIP3P water box (OpenMM Modeller, deterministic), >= 2,500 atoms for 3 nm."""
    ff = app.ForceField("amber14/tip3p.xml")
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(ff, boxSize=openmm.Vec3(box_nm, box_nm, box_nm) * u.nanometer)
    pos = np.array(modeller.positions.value_in_unit(u.nanometer))
    return modeller.topology, pos, ff


def water_box(method=app.PME, cutoff=0.9, box_nm=3.0, **kwargs):
    top, pos, ff = water_box_topology(box_nm)
    system = ff.createSystem(top, nonbondedMethod=method, nonbondedCutoff=cutoff * u.nanometer,
                             constraints=None, rigidWater=False, **kwargs)
    box = np.array(top.getPeriodicBoxVectors().value_in_unit(u.nanometer))
    return system, pos, box


@functools.cache
def villin_modeller(solvated: bool):
    """Villin headpiece (N68H) from OpenMM's shipped test.pdb, amber14 + TIP3P."""
    pdb = app.PDBFile(os.path.join(OPENMM_DATA, "test.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    if not solvated:
        modeller.deleteWater()
        ions = [r for r in modeller.topology.residues() if r.name in ("NA", "CL", "Na+", "Cl-")]
        modeller.delete(ions)
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    return modeller, ff


def villin(solvated: bool, method=None, cutoff=1.0, **kwargs):
    modeller, ff = villin_modeller(solvated)
    if method is None:
        method = app.PME if solvated else app.NoCutoff
    system = ff.createSystem(modeller.topology, nonbondedMethod=method,
                             nonbondedCutoff=cutoff * u.nanometer, constraints=None,
                             rigidWater=False, **kwargs)
    pos = np.array(modeller.positions.value_in_unit(u.nanometer))
    box = None
    if modeller.topology.getPeriodicBoxVectors() is not None:
        box = np.array(modeller.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer))
    return system, pos, box


def openmm_energy_forces(system, positions, box=None, platform="Reference", groups=None):
    """(energy kJ/mol, forces [N, 3] kJ/mol/nm) from OpenMM (Reference: double precision)."""
    integ = openmm.VerletIntegrator(0.001)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName(platform))
    if box is not None:
        ctx.setPeriodicBoxVectors(*[openmm.Vec3(*v) for v in box])
    ctx.setPositions(positions)
    # chronograd always places virtual sites from their parents; make OpenMM do the same
    ctx.computeVirtualSites()
    kw = {} if groups is None else {"groups": groups}
    st = ctx.getState(getEnergy=True, getForces=True, **kw)
    e = st.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
    f = np.asarray(st.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer))
    del ctx
    return e, f


def nonbonded_only(system, part: str):
    """Copy of ``system`` whose NonbondedForce keeps only LJ ("lj") or Coulomb ("coulomb")."""
    s = openmm.XmlSerializer.clone(system)
    for f in s.getForces():
        if isinstance(f, openmm.NonbondedForce):
            for a in range(f.getNumParticles()):
                q, sig, eps = f.getParticleParameters(a)
                if part == "lj":
                    f.setParticleParameters(a, 0.0, sig, eps)
                else:
                    f.setParticleParameters(a, q, sig, 0.0)
            for x in range(f.getNumExceptions()):
                i, j, qq, sig, eps = f.getExceptionParameters(x)
                if part == "lj":
                    f.setExceptionParameters(x, i, j, 0.0, sig, eps)
                else:
                    f.setExceptionParameters(x, i, j, qq, sig, 0.0)
    return s
