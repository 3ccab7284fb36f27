"""Generate the learned-model QM set: data/qm_mols/manifest.json + data/qm_mols/qm_data.npz.

Same level of theory and format as data/qm (chronograd-qm/1; B3LYP-D3(BJ)/6-31G*, density
fitting with def2-universal-jkfit, grid level 2, SCF 1e-9 Eh; energies and analytic gradients),
for training and testing learned parameter models:

- TRAIN: 44 small molecules, TEST: 12 held-out molecules never used in training (the split is
  per molecule and fixed here, recorded in the manifest). Elements C, H, N, O, S, F, Cl;
  neutral molecules, anions, cations and a zwitterion. None of the test molecules is in
  data/qm either.
- 8 conformers per molecule: frames of Langevin dynamics at 500 K with chronograd and
  openff_unconstrained-2.3.0 (NAGL charges), 0.5 fs, one frame per ps after 2 ps.

Resumable and divisible: MD frames and every QM result are cached per molecule / geometry in
data/qm_mols/.cache/, so a rerun skips finished work; ``--part K/N`` computes every N-th
geometry starting at K (run the N parts anywhere, in any order, then once more without
``--part`` to assemble the files). ``--workers W`` runs W single-thread PySCF processes. Where
gpu4pyscf and a CUDA device are available the SCF and gradients run on the GPU.

Run: pip install -e ".[qm]"; python data/qm_mols/make_qm_mols.py [--part 0/2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
BOHR = 0.529177210903  # Angstrom
METHOD, BASIS, GRID, AUXBASIS = "B3LYP-D3BJ", "6-31G*", 2, "def2-universal-jkfit"
FORCE_FIELD = "openff_unconstrained-2.3.0.offxml"
N_CONF = 8

TRAIN = {
    "methanol": "CO", "isopropanol": "CC(C)O", "dimethyl-ether": "COC", "acetone": "CC(C)=O",
    "acetaldehyde": "CC=O", "methyl-acetate": "CC(=O)OC", "propanoic-acid": "CCC(=O)O",
    "acetamide": "CC(N)=O", "dimethylformamide": "CN(C)C=O", "methylamine": "CN",
    "dimethylamine": "CNC", "trimethylamine": "CN(C)C", "propylamine": "CCCN",
    "acetonitrile": "CC#N", "pyridine": "c1ccncc1", "pyrrole": "c1cc[nH]c1",
    "imidazole": "c1c[nH]cn1", "furan": "c1ccoc1", "toluene": "Cc1ccccc1",
    "fluorobenzene": "Fc1ccccc1", "chlorobenzene": "Clc1ccccc1", "methanethiol": "CS",
    "dimethyl-sulfide": "CSC", "ethanethiol": "CCS", "thiophene": "c1ccsc1",
    "dimethyl-sulfoxide": "CS(C)=O", "methanesulfonamide": "CS(N)(=O)=O",
    "2-fluoroethanol": "OCCF", "chloroethane": "CCCl", "dichloromethane": "ClCCl",
    "trifluoroethanol": "OCC(F)(F)F", "acetate": "CC(=O)[O-]", "propanoate": "CCC(=O)[O-]",
    "methylammonium": "C[NH3+]", "ethylammonium": "CC[NH3+]", "guanidinium": "NC(N)=[NH2+]",
    "glycine-zwitterion": "[NH3+]CC(=O)[O-]", "urea": "NC(N)=O",
    "methyl-carbamate": "COC(N)=O", "2-methoxyethanol": "COCCO", "morpholine": "C1COCCN1",
    "n-methylformamide": "CNC=O", "2-chloroethanol": "OCCCl", "aniline": "Nc1ccccc1",
}
TEST = {
    "ethyl-acetate": "CCOC(C)=O", "propionamide": "CCC(N)=O", "diethylamine": "CCNCC",
    "2-fluoropyridine": "Fc1ccccn1", "4-chlorophenol": "Oc1ccc(Cl)cc1",
    "ethyl-methyl-sulfide": "CCSC", "butanoate": "CCCC(=O)[O-]", "propylammonium": "CCC[NH3+]",
    "oxazole": "c1cocn1", "2-methylthiophene": "Cc1cccs1", "1,1-difluoroethane": "CC(F)F",
    "tetrahydrofuran": "C1CCOC1",
}


def md_frames(name: str, smiles: str) -> tuple[str, np.ndarray]:
    """(mapped SMILES, [N_CONF, N, 3] Angstrom) from 500 K Langevin dynamics; cached."""
    path = CACHE / f"frames-{name}.npz"
    if path.exists():
        d = np.load(path, allow_pickle=False)
        return str(d["mapped_smiles"]), d["frames"]
    import jax

    import chronograd as cg
    from chronograd.dynamics import langevin
    from chronograd.dynamics.reporters import ReservoirReporter

    mol = cg.Molecule.from_smiles(smiles, name=name, seed=zlib.crc32(name.encode()) % 2**31)
    system = cg.ForceField(FORCE_FIELD).create_system(mol)
    integ = langevin(system, timestep=0.0005, temperature=500.0, friction=5.0)
    state = integ.init(mol.positions, key=jax.random.key(zlib.crc32(name.encode())),
                       temperature=500.0)
    state = cg.simulate(integ, state, 4000)
    rep = ReservoirReporter(N_CONF, every=2000)
    cg.simulate(integ, state, 2000 * N_CONF, reporters=[rep])
    frames = np.stack(rep.frames)[np.argsort(rep.steps)] * 10.0  # nm -> Angstrom
    mapped = mol.mapped_smiles()
    np.savez(path, mapped_smiles=mapped, frames=frames)
    return mapped, frames


def _gpu_available() -> bool:
    try:
        import cupy
        import gpu4pyscf  # noqa: F401

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no gpu4pyscf, no CUDA driver, or no device
        return False


def energy_gradient(numbers, positions, charge):
    """(E in Eh, dE/dx in Eh/bohr, dispersion E) at ``positions`` (Angstrom)."""
    from dftd3.interface import DispersionModel, RationalDampingParam
    from pyscf import dft, gto

    mol = gto.M(atom=[(int(z), p) for z, p in zip(numbers, positions, strict=True)],
                basis=BASIS, unit="Angstrom", charge=int(charge), spin=0, verbose=0)
    mf = dft.RKS(mol)
    mf.xc, mf.grids.level, mf.conv_tol = "b3lyp", GRID, 1e-9
    mf = mf.density_fit(auxbasis=AUXBASIS)
    if _gpu_available():
        mf = mf.to_gpu()
    e_scf = float(mf.kernel())
    if not mf.converged:
        raise RuntimeError("SCF did not converge")
    g_scf = np.asarray(mf.nuc_grad_method().kernel())
    if hasattr(g_scf, "get"):
        g_scf = g_scf.get()
    disp = DispersionModel(np.asarray(numbers), np.asarray(positions) / BOHR).get_dispersion(
        RationalDampingParam(method="b3lyp"), grad=True)
    return e_scf + disp["energy"], g_scf + disp["gradient"], disp["energy"]


def qm(job):
    key, numbers, positions, charge = job
    path = CACHE / f"{key}.npz"
    if path.exists():
        d = np.load(path, allow_pickle=False)
        return key, float(d["energy"]), d["gradient"], float(d["dispersion"])
    from pyscf import lib

    lib.num_threads(int(os.environ["OMP_NUM_THREADS"]))
    try:
        energy, gradient, dispersion = energy_gradient(numbers, positions, charge)
    except RuntimeError as e:
        raise RuntimeError(f"{key}: {e}") from None
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, energy=energy, gradient=gradient, dispersion=dispersion)
    tmp.replace(path)
    return key, float(energy), gradient, float(dispersion)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default=None, help="K/N: compute every N-th geometry from K")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("QM_WORKERS", 1)))
    parser.add_argument("--frames-only", action="store_true")
    args = parser.parse_args(argv)
    CACHE.mkdir(exist_ok=True)
    from rdkit import Chem

    import chronograd as cg

    molecules = [(n, s, "train") for n, s in TRAIN.items()] + \
        [(n, s, "test") for n, s in TEST.items()]
    assert not set(TRAIN) & set(TEST) and not set(TRAIN.values()) & set(TEST.values())
    records, jobs = [], []
    for k, (name, smiles, split) in enumerate(molecules):
        mapped, frames = md_frames(name, smiles)
        mol = cg.Molecule.from_mapped_smiles(mapped)
        numbers = mol.atomic_numbers.tolist()
        records.append(dict(id=f"conf-{name}", name=name, kind="conformers",
                            split=[split] * N_CONF, mapped_smiles=mapped,
                            smiles=Chem.MolToSmiles(Chem.RemoveHs(mol.rdmol)),
                            total_charge=mol.total_charge, n_geometries=N_CONF,
                            frames=frames, numbers=numbers))
        jobs += [(f"conf-{name}-{j:02d}", numbers, x, mol.total_charge)
                 for j, x in enumerate(frames)]
        print(f"[frames {k + 1}/{len(molecules)}] {name}", file=sys.stderr, flush=True)
    if args.frames_only:
        return
    todo = jobs
    if args.part:
        k, n = (int(v) for v in args.part.split("/"))
        todo = jobs[k::n]
    results = {}
    with Pool(max(1, args.workers)) as pool:
        for count, (key, e, g, d) in enumerate(pool.imap_unordered(qm, todo), 1):
            results[key] = (e, g, d)
            print(f"[{count}/{len(todo)}] {key}: E = {e:.8f} Eh", file=sys.stderr, flush=True)
    if args.part:
        return
    arrays, manifest = {}, []
    for r in records:
        keys = [f"{r['id']}-{j:02d}" for j in range(N_CONF)]
        arrays[f"{r['id']}/positions"] = r["frames"]
        arrays[f"{r['id']}/atomic_numbers"] = np.array(r["numbers"], np.int32)
        arrays[f"{r['id']}/energy"] = np.array([results[k][0] for k in keys])
        arrays[f"{r['id']}/gradient"] = np.stack([results[k][1] for k in keys])
        arrays[f"{r['id']}/dispersion_energy"] = np.array([results[k][2] for k in keys])
        manifest.append({k: v for k, v in r.items() if k not in ("frames", "numbers")})
    import dftd3
    import pyscf

    meta = {
        "format": "chronograd-qm/1",
        "method": METHOD, "functional": "B3LYP", "dispersion": "D3(BJ), B3LYP parameters",
        "basis": BASIS, "density_fitting": AUXBASIS, "grid_level": GRID,
        "scf_conv_tol_hartree": 1e-9,
        "program": f"PySCF {pyscf.__version__}",
        "dispersion_program": f"simple-dftd3 (dftd3 python package) {dftd3.__version__}",
        "units": {"positions": "angstrom", "energy": "hartree", "gradient": "hartree/bohr",
                  "dispersion_energy": "hartree"},
        "geometry_sources": {"conformers": f"chronograd Langevin MD, {FORCE_FIELD}, 500 K"},
        "generated_by": "data/qm_mols/make_qm_mols.py",
        "records": manifest,
    }
    np.savez_compressed(HERE / "qm_data.npz", **arrays)
    (HERE / "manifest.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {len(jobs)} geometries of {len(records)} molecules", file=sys.stderr)


if __name__ == "__main__":
    main()
