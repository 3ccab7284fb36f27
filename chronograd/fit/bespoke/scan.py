"""Torsion scans: torsiondrive's wavefront propagation, geomeTRIC's constrained optimizations,
a QM engine (GFN2-xTB through tblite, or the project's B3LYP-D3(BJ)/6-31G* through PySCF).

Every constrained optimization is cached as one JSON file keyed by the molecule, the engine,
the dihedral, the grid point and the starting geometry, so an interrupted scan resumes where it
stopped: torsiondrive replays the same jobs and finds them done. A point whose optimization
fails or does not converge stops the scan with its angle named; what was done stays cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chronograd.fit.bespoke.fragment import BespokeError

BOHR_NM = 0.0529177210903
HARTREE_KJ = 2625.4996394799


@dataclass(frozen=True)
class QMEngine:
    """A QM method as a function (atomic numbers, coordinates [N, 3] bohr, charge) ->
    (energy Eh, gradient [N, 3] Eh/bohr); ``name`` keys the cache."""

    name: str
    method: str
    basis: str
    compute: object

    def __call__(self, numbers, coords_bohr, charge):
        return self.compute(numbers, coords_bohr, charge)


def _xtb(numbers, coords, charge):
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", np.asarray(numbers), np.asarray(coords, float),
                      charge=float(charge))
    calc.set("verbosity", 0)
    res = calc.singlepoint()
    return float(res.get("energy")), np.asarray(res.get("gradient"))


def xtb_engine() -> QMEngine:
    """GFN2-xTB (tblite)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("tblite")
    except PackageNotFoundError:
        raise BespokeError("--qm xtb needs tblite (pip install tblite)") from None
    return QMEngine(f"gfn2-xtb/tblite-{v}", "GFN2-xTB", "none", _xtb)


def _dft(numbers, coords, charge):
    from dftd3.interface import DispersionModel, RationalDampingParam
    from pyscf import dft, gto

    mol = gto.M(atom=[(int(z), p) for z, p in zip(numbers, coords, strict=True)],
                basis="6-31G*", unit="Bohr", charge=int(charge), spin=0, verbose=0)
    mf = dft.RKS(mol)
    mf.xc, mf.grids.level, mf.conv_tol = "b3lyp", 2, 1e-9
    mf = mf.density_fit(auxbasis="def2-universal-jkfit")
    e = mf.kernel()
    if not mf.converged:
        raise RuntimeError("the SCF did not converge")
    g = mf.nuc_grad_method().kernel()
    disp = DispersionModel(np.asarray(numbers), np.asarray(coords)).get_dispersion(
        RationalDampingParam(method="b3lyp"), grad=True)
    return float(e + disp["energy"]), np.asarray(g + disp["gradient"])


def dft_engine() -> QMEngine:
    """B3LYP-D3(BJ)/6-31G* with density fitting (PySCF + dftd3): the level of data/qm."""
    try:
        import dftd3  # noqa: F401
        import pyscf
    except ImportError:
        raise BespokeError("--qm dft needs PySCF and dftd3: pip install 'chronograd[qm]'"
                           ) from None
    return QMEngine(f"b3lyp-d3bj/6-31g*/pyscf-{pyscf.__version__}", "B3LYP-D3BJ", "6-31G*",
                    _dft)


ENGINES = {"xtb": xtb_engine, "dft": dft_engine}


@dataclass
class ScanResult:
    """The lowest-energy constrained minimum at every grid point."""

    angles_deg: np.ndarray  # [n]
    positions: np.ndarray  # [n, N, 3] nm
    energy: np.ndarray  # [n] kJ/mol
    optimizations: int  # constrained optimizations this scan needed
    cached: int  # of which found in the cache


def _dihedral(x, d) -> float:
    from chronograd.potentials.geometry import dihedral_angles

    return float(np.rad2deg(np.asarray(dihedral_angles(np.asarray(x), None,
                                                       np.asarray([d])))[0]))


def _optimize(engine, numbers, symbols, charge, start_bohr, dihedral, angle, max_steps):
    """Constrained minimum (coords bohr, energy Eh) from ``start_bohr`` with the dihedral
    held at ``angle`` degrees."""
    import geometric.engine
    import geometric.internal
    import geometric.molecule
    import geometric.optimize
    import geometric.params
    from geometric.prepare import parse_constraints

    class _Engine(geometric.engine.Engine):
        def calc_new(self, coords, dirname):
            e, g = engine(numbers, coords.reshape(-1, 3), charge)
            if not (np.isfinite(e) and np.all(np.isfinite(g))):
                raise RuntimeError("the engine returned a non-finite energy or gradient")
            return {"energy": e, "gradient": np.asarray(g).ravel()}

    m = geometric.molecule.Molecule()
    m.elem = list(symbols)
    m.xyzs = [np.asarray(start_bohr).reshape(-1, 3) * BOHR_NM * 10.0]
    m.build_topology()
    spec = "$set\ndihedral {} {} {} {} {:.6f}\n".format(*[a + 1 for a in dihedral], angle)
    cons, cvals = parse_constraints(m, spec)
    ic = geometric.internal.DelocalizedInternalCoordinates(
        m, build=True, connect=False, addcart=False, constraints=cons, cvals=cvals[0])
    params = geometric.params.OptParams(maxiter=max_steps)
    with tempfile.TemporaryDirectory(prefix="chronograd-geometric-") as tmp:
        params.xyzout = os.path.join(tmp, "opt.xyz")
        progress = geometric.optimize.Optimize(np.asarray(start_bohr, float).ravel(), m, ic,
                                               _Engine(m), tmp, params, print_info=False)
    return np.asarray(progress.xyzs[-1]) / (BOHR_NM * 10.0), float(progress.qm_energies[-1])


def _atomic_json(path: Path, obj) -> None:
    from chronograd.interop.files import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj)))


def torsion_scan(molecule, dihedral, engine: QMEngine, *, spacing: int = 15,
                 cache, max_steps: int = 300, log=None) -> ScanResult:
    """A 1D torsion scan of ``dihedral`` (0-based atoms) of ``molecule`` (its conformer is the
    start) on a ``spacing``-degree grid: torsiondrive proposes constrained optimizations,
    geomeTRIC runs them with ``engine``; results are cached in ``cache`` (a folder).

    Raises:
        BespokeError: an optimization fails, does not converge in ``max_steps``, or ends off
            its grid angle (naming the angle; the completed points stay cached).
    """
    import torsiondrive.td_api as td

    if spacing <= 0 or 180 % spacing:
        raise BespokeError(f"scan spacing {spacing} deg must divide 180 (e.g. 15, 30, 90)")
    logging.getLogger("geometric").setLevel(logging.ERROR)
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    numbers = np.asarray(molecule.atomic_numbers)
    symbols = [a.GetSymbol() for a in molecule.rdmol.GetAtoms()]
    charge = int(molecule.total_charge)
    key0 = json.dumps([engine.name, molecule.mapped_smiles(), [int(a) for a in dihedral],
                       int(max_steps)])
    # torsiondrive keys jobs by coordinates truncated to 0.001 angstrom; file coordinates
    # (4 decimals) sit on those boundaries, where unit round trips flip the key and the scan
    # repeats a job forever. The start is moved to the middle of its 0.001 angstrom cell.
    start = (np.floor(np.asarray(molecule.positions) * 1e4) + 0.5) / 1e4 / BOHR_NM
    state = td.create_initial_state(dihedrals=[list(map(int, dihedral))],
                                    grid_spacing=[int(spacing)], elements=symbols,
                                    init_coords=[start])
    runs = cached = 0
    asked: dict[str, int] = {}
    while True:
        with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
            jobs = td.next_jobs_from_state(state)
        if not jobs:
            break
        results = {}
        for grid, geometries in jobs.items():
            angle = float(grid)
            results[grid] = []
            for geo in geometries:
                geo = np.asarray(geo, float).reshape(-1, 3)
                digest = hashlib.sha256((key0 + grid).encode()
                                        + np.round(geo, 5).tobytes()).hexdigest()[:24]
                path = cache / f"opt-{digest}.json"
                asked[digest] = asked.get(digest, 0) + 1
                if asked[digest] > 2:
                    raise BespokeError(
                        f"torsion scan of dihedral {'-'.join(map(str, dihedral))}: torsiondrive"
                        f" asked again for the optimization at {angle:g} deg from the same"
                        " start (it rejected the result); this is a bug, please report it")
                runs += 1
                if path.is_file():
                    done = json.loads(path.read_text())
                    cached += 1
                else:
                    try:
                        final, energy = _optimize(engine, numbers, symbols, charge, geo,
                                                  dihedral, angle, max_steps)
                    except Exception as e:  # geomeTRIC or the engine
                        why = str(e).strip().splitlines()[0] if str(e).strip() else \
                            type(e).__name__
                        raise BespokeError(
                            f"torsion scan of dihedral {'-'.join(map(str, dihedral))}: the"
                            f" constrained optimization at {angle:g} deg failed ({engine.method}:"
                            f" {type(e).__name__}: {why}); the {runs - 1} optimizations"
                            f" done are cached in {cache}; rerun to resume") from None
                    got = _dihedral(final * BOHR_NM, dihedral)
                    off = (got - angle + 180.0) % 360.0 - 180.0
                    if abs(off) > 1.0:
                        raise BespokeError(
                            f"torsion scan of dihedral {'-'.join(map(str, dihedral))}: the"
                            f" constrained optimization at {angle:g} deg ended at {got:.1f} deg;"
                            f" completed points are cached in {cache}")
                    done = {"grid": grid, "start": geo.tolist(), "final": final.tolist(),
                            "energy": energy, "engine": engine.name}
                    _atomic_json(path, done)
                    if log:
                        log(f"  {angle:7.1f} deg  E = {energy:.8f} Eh")
                results[grid].append((geo.ravel().tolist(),
                                      np.asarray(done["final"]).ravel().tolist(),
                                      float(done["energy"])))
        td.update_state(state, results)
    _atomic_json(cache / "torsiondrive_state.json",  # td_api's state: bohr, Eh
                 {"dihedral": [int(a) for a in dihedral], "grid_spacing": int(spacing),
                  "engine": engine.name, "grid_status": state["grid_status"]})
    angles, xs, es = [], [], []
    for grid, entries in sorted(state["grid_status"].items(), key=lambda g: float(g[0])):
        best = min(entries, key=lambda e: e[2])
        angles.append(float(grid))
        xs.append(np.asarray(best[1]).reshape(-1, 3) * BOHR_NM)
        es.append(best[2] * HARTREE_KJ)
    return ScanResult(np.asarray(angles), np.asarray(xs), np.asarray(es), runs, cached)
