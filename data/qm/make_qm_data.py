"""Generate the shipped QM reference data: data/qm/manifest.json + data/qm/qm_data.npz.

Level of theory: B3LYP-D3(BJ)/6-31G* (PySCF RKS with density fitting, def2-universal-jkfit,
as Psi4's default DF in OpenFF's QCArchive sets; grid level 2; SCF convergence 1e-9 Eh; D3(BJ)
from the `dftd3` package, B3LYP damping parameters), energies and analytic gradients for every
geometry. Against grid level 3 without density fitting (phenol): energy 7e-5 Eh, gradient
4e-6 Eh/bohr apart, at 2.5x less time.

Two sets:
- torsion scans of 6 small drug-like fragments about their key rotatable bond: 12 points
  (-180..150 degrees in 30 degree steps), each an MMFF94 geometry optimization with the scanned
  dihedral restrained (RDKit, 1e4 kcal/mol/rad^2), then a QM single point + gradient
  ("MM-relaxed scan"). Constrained QM optimizations (geomeTRIC) would cost ~10-20 QM gradients
  per point; on the 2-core machine this was made on, that is ~15 h instead of ~40 min. The QM
  forces on the relaxed geometries are kept, so the residual relaxation shows up in the data.
- conformers: 10 per molecule for 10 molecules, frames of Langevin dynamics at 500 K with
  chronograd and OpenFF Sage 2.2.1 (unconstrained, AM1-BCC charges), 0.5 fs, one frame per ps
  after 2 ps.

- optimized geometries: the B3LYP-D3BJ/6-31G* minimum of each torsion fragment (geomeTRIC
  from the MMFF94 minimum), for geometry targets.

Split (fixed here and recorded per geometry in the manifest): 1-propanol and p-cresol are test
molecules (all conformers); the last 2 conformers of every other molecule are test; torsion
scans are training data.

Run: pip install "pyscf==2.14.0" "dftd3==1.7.0"; python data/qm/make_qm_data.py
QM results are cached per geometry in data/qm/.cache/ (a rerun resumes).
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per worker; workers = cores

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
BOHR = 0.529177210903  # Angstrom
METHOD, BASIS, GRID = "B3LYP-D3BJ", "6-31G*", 2
AUXBASIS = "def2-universal-jkfit"

TORSIONS = {  # name: (SMILES, SMARTS of the scanned dihedral)
    "ethanol": ("CCO", "[#6]-[#6]-[#8]-[#1]"),
    "propanal": ("CCC=O", "[#6]-[#6]-[#6]=[#8]"),
    "phenol": ("Oc1ccccc1", "c:c-[#8]-[#1]"),
    "benzaldehyde": ("O=Cc1ccccc1", "c:c-[#6]=[#8]"),
    "anisole": ("COc1ccccc1", "c:c-[#8]-[#6;X4]"),
    "styrene": ("C=Cc1ccccc1", "c:c-[#6]=[#6]"),
}
CONFORMERS = {
    "ethanol": "CCO", "propanal": "CCC=O", "phenol": "Oc1ccccc1", "anisole": "COc1ccccc1",
    "n-methylacetamide": "CC(=O)NC",
    "acetic-acid": "CC(=O)O", "ethylene-glycol": "OCCO", "ethylamine": "CCN",
    "1-propanol": "CCCO", "p-cresol": "Cc1ccc(O)cc1",
}
TEST_MOLECULES = {"1-propanol", "p-cresol"}
N_CONF, N_TEST_CONF = 10, 2
SCAN = np.arange(-180, 180, 30)


def rdkit_start(smiles, seed=20261122):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    p = AllChem.ETKDGv3()
    p.randomSeed = seed
    AllChem.EmbedMolecule(mol, p)
    AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    return mol


def torsion_scan(name):
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdMolTransforms

    smiles, smarts = TORSIONS[name]
    mol = rdkit_start(smiles)
    dihedral = mol.GetSubstructMatch(Chem.MolFromSmarts(smarts))
    props = AllChem.MMFFGetMoleculeProperties(mol)
    frames = []
    for angle in SCAN:
        m = Chem.Mol(mol)
        conf = m.GetConformer()
        rdMolTransforms.SetDihedralDeg(conf, *dihedral, float(angle))
        ff = AllChem.MMFFGetMoleculeForceField(m, props)
        ff.MMFFAddTorsionConstraint(*dihedral, False, float(angle), float(angle), 1e4)
        ff.Minimize(maxIts=5000)
        frames.append(m.GetConformer().GetPositions())
    return mol, [int(i) for i in dihedral], np.array(frames)


def md_conformers(name):
    import jax

    jax.config.update("jax_enable_x64", True)
    import chronograd as cg
    from chronograd.dynamics import langevin
    from chronograd.dynamics.reporters import ReservoirReporter

    mol = rdkit_start(CONFORMERS[name])
    m = cg.Molecule.from_rdkit(mol, name=name)
    ff = cg.ForceField("openff_unconstrained-2.2.1.offxml")
    system = ff.create_system(m, charges="am1bcc")
    integ = langevin(system, timestep=0.0005, temperature=500.0, friction=5.0)
    state = integ.init(m.positions, key=jax.random.key(zlib.crc32(name.encode())),
                       temperature=500.0)
    state = cg.simulate(integ, state, 4000)
    rep = ReservoirReporter(N_CONF, every=2000)
    cg.simulate(integ, state, 2000 * N_CONF, reporters=[rep])
    frames = np.stack(rep.frames)[np.argsort(rep.steps)] * 10.0  # nm -> Angstrom
    return mol, frames


def qm(job):
    """B3LYP-D3BJ/6-31G* energy (Eh) and gradient (Eh/bohr) of one geometry (Angstrom)."""
    key, numbers, positions = job
    path = CACHE / f"{key}.npz"
    if path.exists():
        d = np.load(path, allow_pickle=False)
        return key, float(d["energy"]), d["gradient"], float(d["dispersion"])
    from pyscf import lib

    lib.num_threads(int(os.environ["OMP_NUM_THREADS"]))
    try:
        energy, gradient, dispersion = _energy_gradient(numbers, positions)
    except RuntimeError as e:
        raise RuntimeError(f"{key}: {e}") from None
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, energy=energy, gradient=gradient, dispersion=dispersion)
    tmp.replace(path)
    return key, float(energy), gradient, float(dispersion)


def _energy_gradient(numbers, positions):
    """(E, dE/dx) in Eh and Eh/bohr at ``positions`` (Angstrom): B3LYP/6-31G* + D3(BJ)."""
    from dftd3.interface import DispersionModel, RationalDampingParam
    from pyscf import dft, gto

    mol = gto.M(atom=[(int(z), p) for z, p in zip(numbers, positions, strict=True)],
                basis=BASIS, unit="Angstrom", charge=0, spin=0, verbose=0)
    mf = dft.RKS(mol)
    mf.xc, mf.grids.level, mf.conv_tol = "b3lyp", GRID, 1e-9
    mf = mf.density_fit(auxbasis=AUXBASIS)
    e_scf = mf.kernel()
    if not mf.converged:
        raise RuntimeError("SCF did not converge")
    g_scf = mf.nuc_grad_method().kernel()
    disp = DispersionModel(np.asarray(numbers), np.asarray(positions) / BOHR).get_dispersion(
        RationalDampingParam(method="b3lyp"), grad=True)
    return e_scf + disp["energy"], g_scf + disp["gradient"], disp["energy"]


def qm_optimize(job):
    """B3LYP-D3BJ/6-31G* minimum from ``positions`` (geomeTRIC, TRIC coordinates, default
    convergence): final geometry, energy and gradient."""
    key, numbers, positions = job
    path = CACHE / f"{key}.npz"
    if path.exists():
        d = np.load(path, allow_pickle=False)
        return key, d["positions"], float(d["energy"]), d["gradient"], float(d["dispersion"])
    from pyscf import gto, lib
    from pyscf.geomopt import as_pyscf_method, geometric_solver

    lib.num_threads(int(os.environ["OMP_NUM_THREADS"]))
    os.chdir(CACHE)  # geomeTRIC writes its log files into the working directory
    mol = gto.M(atom=[(int(z), p) for z, p in zip(numbers, positions, strict=True)],
                basis=BASIS, unit="Angstrom", verbose=0)

    def scanner(m):
        e, g, _ = _energy_gradient(numbers, m.atom_coords(unit="Angstrom"))
        return e, g

    opt = geometric_solver.optimize(as_pyscf_method(mol, scanner), maxsteps=100)
    x = opt.atom_coords(unit="Angstrom")
    e, g, d = _energy_gradient(numbers, x)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, positions=x, energy=e, gradient=g, dispersion=d)
    tmp.replace(path)
    return key, x, float(e), g, float(d)


def main():
    import dftd3
    import pyscf
    from rdkit import Chem

    import chronograd as cg

    CACHE.mkdir(exist_ok=True)
    records, jobs = [], []
    for name in TORSIONS:
        mol, dihedral, frames = torsion_scan(name)
        records.append(dict(id=f"scan-{name}", name=name, kind="torsion_scan",
                            dihedral=dihedral, angles_deg=SCAN.tolist(),
                            split=["train"] * len(frames), mol=mol, frames=frames))
    for name in CONFORMERS:
        mol, frames = md_conformers(name)
        split = (["test"] * N_CONF if name in TEST_MOLECULES else
                 ["train"] * (N_CONF - N_TEST_CONF) + ["test"] * N_TEST_CONF)
        records.append(dict(id=f"conf-{name}", name=name, kind="conformers", split=split,
                            mol=mol, frames=frames))
    for r in records:
        numbers = [a.GetAtomicNum() for a in r["mol"].GetAtoms()]
        jobs += [(f"{r['id']}-{k:02d}", numbers, x) for k, x in enumerate(r["frames"])]
    n_workers = int(os.environ.get("QM_WORKERS", os.cpu_count() or 1))
    results = {}
    opt_jobs = []
    for name in TORSIONS:
        mol = rdkit_start(TORSIONS[name][0])
        opt_jobs.append((f"opt-{name}", [a.GetAtomicNum() for a in mol.GetAtoms()],
                         mol.GetConformer().GetPositions()))
        records.append(dict(id=f"opt-{name}", name=name, kind="optimized", split=["train"],
                            mol=mol, frames=None))
    with Pool(n_workers) as pool:
        for k, (key, e, g, d) in enumerate(pool.imap(qm, jobs)):
            results[key] = (e, g, d)
            print(f"[{k + 1}/{len(jobs)}] {key}: E = {e:.8f} Eh", flush=True)
        for key, x, e, g, d in pool.imap(qm_optimize, opt_jobs):
            results[f"{key}-00"] = (e, g, d)
            next(r for r in records if r["id"] == key)["frames"] = x[None]
            print(f"{key}: optimized, E = {e:.8f} Eh, max |g| {np.abs(g).max():.1e}",
                  flush=True)

    arrays, manifest = {}, []
    for r in records:
        keys = [f"{r['id']}-{k:02d}" for k in range(len(r["frames"]))]
        arrays[f"{r['id']}/positions"] = r["frames"]
        arrays[f"{r['id']}/atomic_numbers"] = np.array(
            [a.GetAtomicNum() for a in r["mol"].GetAtoms()], np.int32)
        arrays[f"{r['id']}/energy"] = np.array([results[k][0] for k in keys])
        arrays[f"{r['id']}/gradient"] = np.stack([results[k][1] for k in keys])
        arrays[f"{r['id']}/dispersion_energy"] = np.array([results[k][2] for k in keys])
        entry = {k: v for k, v in r.items() if k not in ("mol", "frames")}
        entry["mapped_smiles"] = cg.Molecule.from_rdkit(r["mol"]).mapped_smiles()
        entry["smiles"] = Chem.MolToSmiles(Chem.RemoveHs(r["mol"]))
        entry["n_geometries"] = len(keys)
        manifest.append(entry)
    meta = {
        "format": "chronograd-qm/1",
        "method": METHOD, "functional": "B3LYP", "dispersion": "D3(BJ), B3LYP parameters",
        "basis": BASIS, "density_fitting": AUXBASIS, "grid_level": GRID,
        "scf_conv_tol_hartree": 1e-9,
        "program": f"PySCF {pyscf.__version__}",
        "dispersion_program": f"simple-dftd3 (dftd3 python package) {dftd3.__version__}",
        "units": {"positions": "angstrom", "energy": "hartree", "gradient": "hartree/bohr",
                  "dispersion_energy": "hartree"},
        "geometry_sources": {
            "torsion_scan": "MMFF94-relaxed scan, dihedral restrained (RDKit)",
            "conformers": "chronograd Langevin MD, Sage 2.2.1 unconstrained, AM1-BCC, 500 K"},
        "generated_by": "data/qm/make_qm_data.py",
        "records": manifest,
    }
    np.savez_compressed(HERE / "qm_data.npz", **arrays)
    (HERE / "manifest.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {len(jobs)} geometries of {len(records)} records", file=sys.stderr)


if __name__ == "__main__":
    main()
