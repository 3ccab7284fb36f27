"""OpenMM interop: import any OpenMM System as a differentiable chronograd System, export back.

Supported forces: HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce, NonbondedForce
(NoCutoff, CutoffNonPeriodic, CutoffPeriodic, Ewald, PME, LJPME; exceptions, switching,
dispersion correction), CustomBondForce, CustomAngleForce, CustomTorsionForce,
CustomExternalForce and CustomNonbondedForce (their Lepton expressions translated through sympy,
``potentials/expressions.py``; per-item and global parameters become parameters),
CMAPTorsionForce (OpenMM's periodic bicubic spline; the map energies are parameters),
GBSAOBCForce, and CMMotionRemover (no energy; ignored). Anything else raises
UnsupportedForceError naming the force, so energies are never silently incomplete.

Imported parameters are "frozen" values in the parameter pytree: plain arrays that ``jax.grad``
reaches like any other parameters. OpenMM's internal units are chronograd's, so values pass
through unchanged and the round trip ``to_openmm(from_openmm(s))`` is exact.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError, UnsupportedForceError
from chronograd.system.custom_terms import BONDED_KINDS, CustomBondedTerm, CustomNonbondedTerm
from chronograd.system.nonbonded import NonbondedTerm
from chronograd.system.nonbonded_settings import nonbonded_term
from chronograd.system.system import System
from chronograd.system.terms import (
    HarmonicAngleTerm,
    HarmonicBondTerm,
    MorseBondTerm,
    PeriodicTorsionTerm,
)
from chronograd.system.validate import check_system
from chronograd.system.virtual_sites import VirtualSites, resolved_weights

_METHOD_NAMES = {
    0: "NoCutoff",
    1: "CutoffNonPeriodic",
    2: "CutoffPeriodic",
    3: "Ewald",
    4: "PME",
    5: "LJPME",
}


def _value(q) -> float:
    """A float in OpenMM's md unit system (nm, ps, kJ/mol, e, amu, rad)."""
    import openmm.unit as u

    if u.is_quantity(q):
        return float(q.value_in_unit_system(u.md_unit_system))
    return float(q)


def _unique_name(base: str, used: set[str]) -> str:
    name, k = base, 2
    while name in used:
        name, k = f"{base}_{k}", k + 1
    used.add(name)
    return name


def _import_bonds(force):
    n = force.getNumBonds()
    atoms = np.zeros((n, 2), np.int32)
    length, k = np.zeros(n), np.zeros(n)
    for b in range(n):
        i, j, r0, kb = force.getBondParameters(b)
        atoms[b] = i, j
        length[b], k[b] = _value(r0), _value(kb)
    return atoms, {"length": length, "k": k}


def _import_angles(force):
    n = force.getNumAngles()
    atoms = np.zeros((n, 3), np.int32)
    angle, k = np.zeros(n), np.zeros(n)
    for a in range(n):
        i, j, l, theta0, ka = force.getAngleParameters(a)
        atoms[a] = i, j, l
        angle[a], k[a] = _value(theta0), _value(ka)
    return atoms, {"angle": angle, "k": k}


def _import_torsions(force):
    n = force.getNumTorsions()
    atoms = np.zeros((n, 4), np.int32)
    periodicity = np.zeros(n, np.int32)
    phase, k = np.zeros(n), np.zeros(n)
    for t in range(n):
        i, j, l, m, per, ph, kt = force.getTorsionParameters(t)
        atoms[t] = i, j, l, m
        periodicity[t] = per
        phase[t], k[t] = _value(ph), _value(kt)
    return atoms, periodicity, {"phase": phase, "k": k}


def _import_nonbonded(force, index: int, name: str, box) -> tuple[NonbondedTerm, dict]:
    method = _METHOD_NAMES[force.getNonbondedMethod()]
    where = f"NonbondedForce (force index {index})"
    if force.getNumGlobalParameters() or force.getNumParticleParameterOffsets() or (
        force.getNumExceptionParameterOffsets()
    ):
        raise UnsupportedForceError(
            f"{where} has global parameters or parameter offsets, which chronograd does not"
            " support; bake the offsets into the particle and exception parameters"
        )
    n = force.getNumParticles()
    charge, sigma, epsilon = np.zeros(n), np.zeros(n), np.zeros(n)
    for a in range(n):
        q, s, e = force.getParticleParameters(a)
        charge[a], sigma[a], epsilon[a] = _value(q), _value(s), _value(e)
    ne = force.getNumExceptions()
    ex_atoms = np.zeros((ne, 2), np.int32)
    ex_q, ex_s, ex_e = np.zeros(ne), np.zeros(ne), np.zeros(ne)
    for x in range(ne):
        i, j, qq, s, e = force.getExceptionParameters(x)
        ex_atoms[x] = i, j
        ex_q[x], ex_s[x], ex_e[x] = _value(qq), _value(s), _value(e)
    cutoff = _value(force.getCutoffDistance())
    pme = lj_pme = None
    if method in ("PME", "LJPME"):
        a0, nx, ny, nz = force.getPMEParameters()
        if _value(a0) != 0.0:
            pme = (_value(a0), (int(nx), int(ny), int(nz)))
    if method == "LJPME":
        a0, nx, ny, nz = force.getLJPMEParameters()
        if _value(a0) != 0.0:
            lj_pme = (_value(a0), (int(nx), int(ny), int(nz)))
    term = nonbonded_term(
        name=name, method=method, exception_atoms=ex_atoms, sigma=sigma, epsilon=epsilon,
        cutoff=cutoff, box=box,
        switch_distance=_value(force.getSwitchingDistance())
        if force.getUseSwitchingFunction() else None,
        reaction_field_dielectric=float(force.getReactionFieldDielectric()),
        ewald_error_tolerance=float(force.getEwaldErrorTolerance()),
        use_dispersion_correction=bool(force.getUseDispersionCorrection()),
        exceptions_use_periodic=bool(force.getExceptionsUsePeriodicBoundaryConditions()),
        pme=pme, lj_pme=lj_pme)
    params = {
        "charge": charge,
        "sigma": sigma,
        "epsilon": epsilon,
        "exception_charge_prod": ex_q,
        "exception_sigma": ex_s,
        "exception_epsilon": ex_e,
    }
    return term, params


_CUSTOM_BONDED = {"CustomBondForce": "custom_bond", "CustomAngleForce": "custom_angle",
                  "CustomTorsionForce": "custom_torsion", "CustomExternalForce": "custom_external"}
_CUSTOM_CLASSES = {v: k for k, v in _CUSTOM_BONDED.items()}
_CUSTOM_NB_METHODS = {0: None, 1: "CutoffNonPeriodic", 2: "CutoffPeriodic"}


def _globals(force) -> tuple[tuple[str, ...], dict]:
    names = tuple(force.getGlobalParameterName(k) for k in range(force.getNumGlobalParameters()))
    values = {nm: np.asarray(float(force.getGlobalParameterDefaultValue(k)))
              for k, nm in enumerate(names)}
    return names, values


def _no_tabulated(force, where: str) -> None:
    if hasattr(force, "getNumTabulatedFunctions") and force.getNumTabulatedFunctions():
        raise UnsupportedForceError(
            f"{where} uses the tabulated function {force.getTabulatedFunctionName(0)!r},"
            " which chronograd does not translate; write it as an expression")


def _import_custom_bonded(force, kind: str, index: int, name: str, periodic: bool):
    where = f"{type(force).__name__} (force index {index})"
    _no_tabulated(force, where)
    if kind == "custom_external":
        count, get = force.getNumParticles(), force.getParticleParameters
        per = tuple(force.getPerParticleParameterName(k)
                    for k in range(force.getNumPerParticleParameters()))
    else:
        noun = {"custom_bond": "Bond", "custom_angle": "Angle", "custom_torsion": "Torsion"}[kind]
        count = getattr(force, f"getNum{noun}s")()
        get = getattr(force, f"get{noun}Parameters")
        per = tuple(getattr(force, f"getPer{noun}ParameterName")(k)
                    for k in range(getattr(force, f"getNumPer{noun}Parameters")()))
    width = BONDED_KINDS[kind][1]
    atoms = np.zeros((count, width), np.int32)
    values = np.zeros((count, len(per)))
    for b in range(count):
        row = get(b)
        atoms[b] = row[:width]
        values[b] = [float(v) for v in row[width]]
    glob, p = _globals(force)
    if kind == "custom_external":
        periodic = "periodicdistance" in force.getEnergyFunction()
    try:
        term = CustomBondedTerm(name, atoms, kind, force.getEnergyFunction(), per, glob,
                                periodic=periodic)
    except UnsupportedForceError as exc:
        raise UnsupportedForceError(f"{where}: {exc}") from None
    p.update({k: values[:, c] for c, k in enumerate(per)})
    return term, p


def _import_custom_nonbonded(force, index: int, name: str, n: int, box):
    from chronograd.system.pair_terms import explicit_particle_pairs, in_trace_spec
    from chronograd.system.pairs import MAX_EXPLICIT_PAIR_PARTICLES

    where = f"CustomNonbondedForce (force index {index})"
    tables = _discrete_tables(force, where)
    if force.getNumComputedValues():
        raise UnsupportedForceError(f"{where} uses computed values, which chronograd does not"
                                    " translate; write them into the energy expression")
    if force.getUseLongRangeCorrection():
        raise UnsupportedForceError(
            f"{where} uses the long-range correction, which chronograd does not compute for"
            " custom expressions; turn it off (setUseLongRangeCorrection(False)) or use a"
            " NonbondedForce with a dispersion correction")
    method = _CUSTOM_NB_METHODS[force.getNonbondedMethod()]
    cutoff = None if method is None else _value(force.getCutoffDistance())
    periodic = method == "CutoffPeriodic"
    per = tuple(force.getPerParticleParameterName(k)
                for k in range(force.getNumPerParticleParameters()))
    values = np.array([[float(v) for v in force.getParticleParameters(a)] for a in range(n)])
    values = values.reshape(n, len(per))
    exclusions = np.array([force.getExclusionParticles(k)
                           for k in range(force.getNumExclusions())], np.int64).reshape(-1, 2)
    neighbors, ex_tuple = None, ()
    if force.getNumInteractionGroups():
        ex = {tuple(sorted(map(int, e))) for e in exclusions}
        found = set()
        for g in range(force.getNumInteractionGroups()):
            a, b = force.getInteractionGroupParameters(g)
            found.update((min(i, j), max(i, j)) for i in a for j in b
                         if i != j and (min(i, j), max(i, j)) not in ex)
        pairs = np.array(sorted(found), np.int32).reshape(-1, 2)
    elif n > MAX_EXPLICIT_PAIR_PARTICLES and periodic:
        pairs = np.zeros((0, 2), np.int32)
        ex_tuple = tuple(tuple(sorted(map(int, e))) for e in exclusions)
        neighbors = in_trace_spec(n, cutoff, box)
    elif n > MAX_EXPLICIT_PAIR_PARTICLES:
        raise UnsupportedForceError(
            f"{where}: {n} particles without a periodic cutoff would need"
            f" {n * (n - 1) // 2:,} explicit pairs; use CutoffPeriodic or interaction groups")
    else:
        pairs = explicit_particle_pairs(n, exclusions)
    glob, p = _globals(force)
    switch = (_value(force.getSwitchingDistance()) if force.getUseSwitchingFunction()
              and cutoff is not None else None)
    try:
        term = CustomNonbondedTerm(name, pairs, force.getEnergyFunction(), per, glob,
                                   cutoff=cutoff, periodic=periodic, switch_distance=switch,
                                   neighbors=neighbors, exclusions=ex_tuple,
                                   tables=tuple(tables))
    except UnsupportedForceError as exc:
        raise UnsupportedForceError(f"{where}: {exc}") from None
    p.update({k: values[:, c] for c, k in enumerate(per)})
    p.update({f"table_{k}": v for k, v in tables.items()})
    return term, p


def _discrete_tables(force, where: str) -> dict:
    """{name: array} of the force's Discrete1D/2D/3DFunctions (T[i, j, k] is the value at
    (i, j, k)); any other tabulated function is refused, named."""
    import openmm

    out = {}
    for k in range(force.getNumTabulatedFunctions()):
        name, f = force.getTabulatedFunctionName(k), force.getTabulatedFunction(k)
        if isinstance(f, openmm.Discrete1DFunction):
            out[name] = np.asarray(f.getFunctionParameters(), np.float64)
        elif isinstance(f, openmm.Discrete2DFunction):
            nx, ny, v = f.getFunctionParameters()
            out[name] = np.asarray(v, np.float64).reshape(ny, nx).T
        elif isinstance(f, openmm.Discrete3DFunction):
            nx, ny, nz, v = f.getFunctionParameters()
            out[name] = np.asarray(v, np.float64).reshape(nz, ny, nx).transpose(2, 1, 0)
        else:
            raise UnsupportedForceError(
                f"{where} uses the tabulated function {name!r} ({type(f).__name__}), which"
                " chronograd does not translate (Discrete1D/2D/3DFunction are supported);"
                " write it as an expression")
    return out


def from_openmm(openmm_system, *, source: str = "OpenMM System") -> System:
    """Import an ``openmm.System``; parameters become a differentiable pytree.

    Raises:
        UnsupportedForceError: for a force or feature chronograd cannot evaluate (named).
        InputError: out-of-range particle indices or non-finite values (``source`` names the
            file they came from).
    """
    import openmm

    n = openmm_system.getNumParticles()
    virtual_sites = _import_virtual_sites(openmm_system)
    masses = np.array([_value(openmm_system.getParticleMass(a)) for a in range(n)])
    vecs = openmm_system.getDefaultPeriodicBoxVectors()
    box = np.array([[_value(c) for c in v] for v in vecs])
    nc = openmm_system.getNumConstraints()
    constraints = np.zeros((nc, 2), np.int32)
    distances = np.zeros(nc)
    for c in range(nc):
        i, j, d = openmm_system.getConstraintParameters(c)
        constraints[c] = i, j
        distances[c] = _value(d)

    terms, params, used = [], {}, set()
    for index, force in enumerate(openmm_system.getForces()):
        periodic = bool(force.usesPeriodicBoundaryConditions())
        if isinstance(force, openmm.CMMotionRemover):
            continue
        if isinstance(force, openmm.HarmonicBondForce):
            name = _unique_name("harmonic_bond", used)
            atoms, p = _import_bonds(force)
            terms.append(HarmonicBondTerm(name, atoms, periodic=periodic))
        elif isinstance(force, openmm.HarmonicAngleForce):
            name = _unique_name("harmonic_angle", used)
            atoms, p = _import_angles(force)
            terms.append(HarmonicAngleTerm(name, atoms, periodic=periodic))
        elif isinstance(force, openmm.PeriodicTorsionForce):
            name = _unique_name("periodic_torsion", used)
            atoms, per, p = _import_torsions(force)
            terms.append(PeriodicTorsionTerm(name, atoms, periodicity=per, periodic=periodic))
        elif isinstance(force, openmm.NonbondedForce):
            name = _unique_name("nonbonded", used)
            term, p = _import_nonbonded(force, index, name, box)
            terms.append(term)
        elif type(force).__name__ in _CUSTOM_BONDED:
            kind = _CUSTOM_BONDED[type(force).__name__]
            name = _unique_name(kind, used)
            term, p = _import_custom_bonded(force, kind, index, name, periodic)
            terms.append(term)
        elif isinstance(force, openmm.CustomNonbondedForce):
            name = _unique_name("custom_nonbonded", used)
            term, p = _import_custom_nonbonded(force, index, name, n, box)
            terms.append(term)
        elif isinstance(force, openmm.CMAPTorsionForce):
            from chronograd.system.cmap import import_cmap

            name = _unique_name("cmap_torsion", used)
            term, p = import_cmap(force, name, periodic)
            terms.append(term)
        elif isinstance(force, openmm.GBSAOBCForce):
            from chronograd.system.gbsa import import_gbsa_obc

            name = _unique_name("gbsa_obc", used)
            term, p = import_gbsa_obc(force, index, name, n, box)
            terms.append(term)
        else:
            raise UnsupportedForceError(
                f"force index {index} is a {type(force).__name__}, which chronograd does not"
                " support; supported: HarmonicBondForce, HarmonicAngleForce,"
                " PeriodicTorsionForce, NonbondedForce, CustomBondForce, CustomAngleForce,"
                " CustomTorsionForce, CustomExternalForce, CustomNonbondedForce,"
                " CMAPTorsionForce, GBSAOBCForce, CMMotionRemover. Remove it from the"
                " System (or convert it) before importing"
            )
        params[name] = {k: jnp.asarray(v) for k, v in p.items()}
    periodic_system = any(getattr(t, "periodic", False) for t in terms)
    system = System(
        masses=masses,
        terms=tuple(terms),
        params=params,
        box=box if periodic_system else None,
        constraints=constraints,
        constraint_distances=distances,
        virtual_sites=virtual_sites,
    )
    check_system(system, source)
    return system


def _import_virtual_sites(openmm_system) -> tuple:
    """Group OpenMM virtual sites by kind and parent count into VirtualSites arrays."""
    import openmm

    groups: dict[tuple[str, int], list] = {}
    for a in range(openmm_system.getNumParticles()):
        if not openmm_system.isVirtualSite(a):
            continue
        vs = openmm_system.getVirtualSite(a)
        k = vs.getNumParticles()
        parents = [vs.getParticle(i) for i in range(k)]
        if isinstance(vs, openmm.TwoParticleAverageSite):
            kind, w = "two_average", [vs.getWeight(i) for i in range(2)]
        elif isinstance(vs, openmm.ThreeParticleAverageSite):
            kind, w = "three_average", [vs.getWeight(i) for i in range(3)]
        elif isinstance(vs, openmm.OutOfPlaneSite):
            kind, w = "out_of_plane", [vs.getWeight12(), vs.getWeight13(), vs.getWeightCross()]
        elif isinstance(vs, openmm.LocalCoordinatesSite):
            local = vs.getLocalPosition()
            kind = "local_coordinates"
            w = [*vs.getOriginWeights(), *vs.getXWeights(), *vs.getYWeights(),
                 *[_value(c) for c in local]]
        else:
            raise UnsupportedForceError(
                f"particle {a} is a {type(vs).__name__} virtual site, which chronograd does not"
                " support (supported: TwoParticleAverageSite, ThreeParticleAverageSite,"
                " OutOfPlaneSite, LocalCoordinatesSite)"
            )
        groups.setdefault((kind, k), []).append((a, parents, [float(x) for x in w]))
    out = []
    for (kind, _), rows in groups.items():
        out.append(VirtualSites(kind, np.array([r[0] for r in rows], np.int32),
                                np.array([r[1] for r in rows], np.int32),
                                np.array([r[2] for r in rows], np.float64)))
    return tuple(out)


def _export_virtual_sites(out, system: System, slots) -> None:
    import openmm

    for vs in system.virtual_sites:
        for site, parents, w in zip(vs.sites, vs.parents, resolved_weights(vs, slots),
                                    strict=True):
            p = [int(i) for i in parents]
            w = [float(x) for x in w]
            if vs.kind == "two_average":
                site_obj = openmm.TwoParticleAverageSite(*p, *w)
            elif vs.kind == "three_average":
                site_obj = openmm.ThreeParticleAverageSite(*p, *w)
            elif vs.kind == "out_of_plane":
                site_obj = openmm.OutOfPlaneSite(*p, *w)
            else:
                k = len(p)
                site_obj = openmm.LocalCoordinatesSite(
                    p, w[:k], w[k:2 * k], w[2 * k:3 * k], openmm.Vec3(*w[3 * k:3 * k + 3]))
            out.setVirtualSite(int(site), site_obj)


def to_openmm(system: System, params=None):
    """Export to an ``openmm.System`` with the given parameters (default: ``system.params``)."""
    import openmm

    for term in system.terms:
        if term.kind == "neural_potential":
            raise InputError(
                f"term {term.name!r} is a graph-network potential, which an OpenMM System"
                " cannot hold; export the system without it (or run it in chronograd)")
        if term.kind == "function":
            raise InputError(
                f"term {term.name!r} is a Python function (FunctionTerm), which an OpenMM"
                " System cannot hold; write it as an OpenMM custom force to export it")
        if term.kind in ("pair_potential", "harmonic_trap"):
            raise InputError(
                f"term {term.name!r} ({term.kind} of a particle system) has no OpenMM export"
                " yet; run the particle system in chronograd")
    params = system.slots(params)
    out = openmm.System()
    for m in np.asarray(system.masses):
        out.addParticle(float(m))
    if system.box is not None:
        out.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*map(float, v)) for v in system.box])
    for (i, j), d in zip(system.constraints, system.constraint_distances, strict=True):
        out.addConstraint(int(i), int(j), float(d))
    _export_virtual_sites(out, system, params)
    for term in system.terms:
        p = {k: np.asarray(v, dtype=np.float64) for k, v in params[term.name].items()}
        if isinstance(term, HarmonicBondTerm):
            f = openmm.HarmonicBondForce()
            for (i, j), r0, k in zip(term.atoms, p["length"], p["k"], strict=True):
                f.addBond(int(i), int(j), float(r0), float(k))
        elif isinstance(term, MorseBondTerm):
            f = openmm.CustomBondForce("D*(1-exp(-a*(r-r0)))^2")
            for name in ("r0", "D", "a"):
                f.addPerBondParameter(name)
            for (i, j), r0, d, a in zip(term.atoms, p["length"], p["depth"], p["alpha"],
                                        strict=True):
                f.addBond(int(i), int(j), [float(r0), float(d), float(a)])
        elif isinstance(term, HarmonicAngleTerm):
            f = openmm.HarmonicAngleForce()
            for (i, j, l), a0, k in zip(term.atoms, p["angle"], p["k"], strict=True):
                f.addAngle(int(i), int(j), int(l), float(a0), float(k))
        elif isinstance(term, PeriodicTorsionTerm):
            f = openmm.PeriodicTorsionForce()
            for (i, j, l, m), n, ph, k in zip(
                term.atoms, term.periodicity, p["phase"], p["k"], strict=True
            ):
                f.addTorsion(int(i), int(j), int(l), int(m), int(n), float(ph), float(k))
        elif isinstance(term, NonbondedTerm):
            f = _export_nonbonded(term, p)
        elif isinstance(term, CustomBondedTerm | CustomNonbondedTerm):
            f = _export_custom(term, p, out.getNumParticles())
        elif term.kind in ("cmap_torsion", "gbsa_obc"):
            f = term.to_openmm(p)
        else:  # pragma: no cover - every term kind is handled above
            raise TypeError(f"cannot export term {term.name!r} of kind {term.kind}")
        if hasattr(f, "setUsesPeriodicBoundaryConditions"):
            f.setUsesPeriodicBoundaryConditions(bool(term.periodic))
        out.addForce(f)
    return out


def _export_nonbonded(term: NonbondedTerm, p):
    import openmm

    f = openmm.NonbondedForce()
    method = {v: k for k, v in _METHOD_NAMES.items()}[term.method]
    f.setNonbondedMethod(method)
    f.setCutoffDistance(float(term.cutoff))
    if term.switch_distance is not None:
        f.setUseSwitchingFunction(True)
        f.setSwitchingDistance(float(term.switch_distance))
    f.setReactionFieldDielectric(float(term.reaction_field_dielectric))
    f.setEwaldErrorTolerance(float(term.ewald_error_tolerance))
    f.setUseDispersionCorrection(bool(term.use_dispersion_correction))
    f.setExceptionsUsePeriodicBoundaryConditions(bool(term.exceptions_use_periodic))
    if term.explicit_pme_parameters:
        f.setPMEParameters(float(term.alpha), *map(int, term.grid))
    if term.explicit_lj_pme_parameters:
        f.setLJPMEParameters(float(term.lj_alpha), *map(int, term.lj_grid))
    for q, s, e in zip(p["charge"], p["sigma"], p["epsilon"], strict=True):
        f.addParticle(float(q), float(s), float(e))
    for (i, j), qq, s, e in zip(
        term.exception_atoms,
        p["exception_charge_prod"],
        p["exception_sigma"],
        p["exception_epsilon"],
        strict=True,
    ):
        f.addException(int(i), int(j), float(qq), float(s), float(e))
    return f


def _export_custom(term, p, n: int):
    import openmm

    if isinstance(term, CustomNonbondedTerm):
        f = openmm.CustomNonbondedForce(term.expression)
        for name in term.per_particle:
            f.addPerParticleParameter(name)
        for name in term.global_params:
            f.addGlobalParameter(name, float(p[name]))
        for name in term.tables:
            v = np.asarray(p[f"table_{name}"], np.float64)
            flat = v.transpose(*reversed(range(v.ndim))).ravel().tolist()
            table = (openmm.Discrete1DFunction(flat) if v.ndim == 1 else
                     openmm.Discrete2DFunction(*v.shape, flat) if v.ndim == 2 else
                     openmm.Discrete3DFunction(*v.shape, flat))
            f.addTabulatedFunction(name, table)
        for a in range(n):
            f.addParticle([float(p[name][a]) for name in term.per_particle])
        method = {None: 0, "CutoffNonPeriodic": 1, "CutoffPeriodic": 2}[
            None if term.cutoff is None else "CutoffPeriodic" if term.periodic
            else "CutoffNonPeriodic"]
        f.setNonbondedMethod(method)
        if term.cutoff is not None:
            f.setCutoffDistance(float(term.cutoff))
        if term.switch_distance is not None:
            f.setUseSwitchingFunction(True)
            f.setSwitchingDistance(float(term.switch_distance))
        if term.neighbors is None and n > 3000:
            raise InputError(f"term {term.name!r}: exporting an explicit pair list of {n}"
                             " particles as exclusions is not supported")
        everything = {(i, j) for i in range(n) for j in range(i + 1, n)} if n <= 3000 else set()
        listed = {tuple(map(int, q)) for q in np.asarray(term.pairs)}
        excluded = sorted(everything - listed) if term.neighbors is None else sorted(
            term.exclusions)
        for i, j in excluded:
            f.addExclusion(int(i), int(j))
        return f
    cls = getattr(openmm, _CUSTOM_CLASSES[term.kind])(term.expression)
    noun = {"custom_bond": "Bond", "custom_angle": "Angle", "custom_torsion": "Torsion",
            "custom_external": "Particle"}[term.kind]
    for name in term.per_item:
        getattr(cls, f"addPer{noun}Parameter")(name)
    for name in term.global_params:
        cls.addGlobalParameter(name, float(p[name]))
    add = getattr(cls, f"add{noun}")
    for r, row in enumerate(np.asarray(term.atoms)):
        add(*map(int, row), [float(p[name][r]) for name in term.per_item])
    return cls
