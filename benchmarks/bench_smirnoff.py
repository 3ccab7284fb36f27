"""SMIRNOFF typing and parameter-gradient costs, against the OpenFF toolkit and Interchange
(test-only references) measured in the same run.

1. Typing throughput (molecules/s) on MiniDrugBank molecules: chronograd labeling vs the
   toolkit's label_molecules; chronograd create_system vs Interchange.from_smirnoff (both
   with the same precomputed charges).
2. Solvated systems (acetanilide + 3,000 waters; the 35-residue villin headpiece peptide +
   3,000 waters): create_system vs Interchange; labeling the peptide vs label_molecules (and
   the two label sets compared).
3. One dU/dtheta over all of theta vs one energy+forces evaluation; and vs central finite
   differences over every used parameter (2 energies each), for a drug-like molecule.
Run: `python benchmarks/bench_smirnoff.py`.
"""

from __future__ import annotations

import importlib.resources
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, median_time, write_section  # noqa: E402

import chronograd as cg  # noqa: E402
from chronograd.forcefield.charges import gasteiger_charges  # noqa: E402
from chronograd.forcefield.labeling import label_molecule  # noqa: E402

FF = "openff-2.2.1.offxml"
VILLIN_HP35 = "LSDEDFKAVFGMTRSAFANLPLWKQQNLKKEKGLF"




def main():
    from openff.interchange import Interchange
    from openff.toolkit import ForceField as OFFForceField
    from openff.toolkit import Molecule as OFFMolecule
    from openff.toolkit import Topology
    from openff.units import unit

    path = importlib.resources.files("openff.toolkit") / "data/molecules/MiniDrugBank.sdf"
    offmols = OFFMolecule.from_file(str(path), allow_undefined_stereo=True)[:100]
    ff, off = cg.ForceField(FF), OFFForceField(FF)
    mols = [cg.Molecule.from_rdkit(m.to_rdkit(), name=m.name) for m in offmols]
    for m, om in zip(mols, offmols, strict=True):
        m.partial_charges = gasteiger_charges(m)
        om.partial_charges = m.partial_charges * unit.elementary_charge

    t_label_off = median_time(lambda: [off.label_molecules(m.to_topology()) for m in offmols])
    t_label_cg = median_time(lambda: [label_molecule(ff.file, m) for m in mols])
    t_ic = median_time(lambda: [Interchange.from_smirnoff(off, [m], charge_from_molecules=[m])
                          for m in offmols])
    t_cs = median_time(lambda: [ff.create_system(m, charges="from-file") for m in mols])
    n = len(mols)

    # solvated system: one solute + many identical waters
    solute = cg.Molecule.from_smiles("CC(=O)Nc1ccccc1")
    solute.partial_charges = gasteiger_charges(solute)
    water = cg.Molecule.from_smiles("O")
    n_water = 3000
    box = np.eye(3) * 4.5
    topology = [solute] + [water] * n_water
    t_cs_box = median_time(lambda: ff.create_system(topology, charges="from-file", box=box))
    off_solute = OFFMolecule.from_rdkit(solute.rdmol, allow_undefined_stereo=True)
    off_solute.partial_charges = solute.partial_charges * unit.elementary_charge
    off_water = OFFMolecule.from_rdkit(water.rdmol)
    top = Topology.from_molecules([off_solute] + [off_water] * n_water)
    top.box_vectors = box * unit.nanometer
    t_ic_box = median_time(lambda: Interchange.from_smirnoff(off, top, charge_from_molecules=[
        off_solute]))
    n_atoms_box = solute.n_atoms + 3 * n_water

    # protein-sized: villin headpiece HP35 (neutral termini and side chains) + waters
    from rdkit import Chem

    peptide = cg.Molecule.from_rdkit(Chem.AddHs(Chem.MolFromSequence(VILLIN_HP35)),
                                     name="villin HP35")
    peptide.partial_charges = gasteiger_charges(peptide)
    protein_topology = [peptide] + [water] * n_water
    t_cs_prot = median_time(lambda: ff.create_system(protein_topology, charges="from-file",
                                                     box=box), 3)
    off_peptide = OFFMolecule.from_rdkit(peptide.rdmol, allow_undefined_stereo=True)
    off_peptide.partial_charges = peptide.partial_charges * unit.elementary_charge
    top = Topology.from_molecules([off_peptide] + [off_water] * n_water)
    top.box_vectors = box * unit.nanometer
    t_ic_prot = median_time(lambda: Interchange.from_smirnoff(
        off, top, charge_from_molecules=[off_peptide]), 3)
    t_label_prot = median_time(lambda: label_molecule(ff.file, peptide), 3)
    t_label_prot_off = median_time(lambda: off.label_molecules(off_peptide.to_topology()), 3)
    ours = label_molecule(ff.file, peptide).assignments
    theirs = off.label_molecules(off_peptide.to_topology())[0]
    same = all(
        {k: ff.file.handlers[h].parameters[i].id for k, i in ours[h].items()}
        == {tuple(k): v.id for k, v in theirs[h].items()}
        for h in ("Bonds", "Angles", "ProperTorsions", "ImproperTorsions", "vdW"))
    if not same:
        raise SystemExit("peptide labels differ from the OpenFF toolkit's")

    # gradient costs for a drug-like molecule in vacuum
    mol = cg.Molecule.from_smiles("CC(=O)Nc1ccc(O)cc1C(=O)N1CCN(C)CC1")
    mol.partial_charges = gasteiger_charges(mol)
    system = ff.create_system(mol, charges="from-file")
    x = jnp.asarray(mol.positions)
    U = jax.jit(system.energy_fn())
    ef = jax.jit(jax.value_and_grad(system.energy_fn()))
    dtheta = jax.jit(jax.grad(system.energy_fn(), argnums=2))
    ef(x, None, ff.params)
    dtheta(x, None, ff.params)
    U(x, None, ff.params)
    t_ef = median_time(lambda: ef(x, None, ff.params), 50)
    t_grad = median_time(lambda: dtheta(x, None, ff.params), 50)
    flat, unravel = jax.flatten_util.ravel_pytree(ff.params)
    used = sorted({int(r) for attrs in system.source.maps.values() for m in attrs.values()
                   for r in np.unique(m.row)})

    def finite_differences():
        out = []
        for r in used:
            h = 1e-6 * max(1.0, abs(float(flat[r])))
            plus = U(x, None, unravel(flat.at[r].add(h)))
            minus = U(x, None, unravel(flat.at[r].add(-h)))
            out.append((plus - minus) / (2 * h))
        return jnp.stack(out)

    t_fd = median_time(finite_differences)
    fd = np.asarray(finite_differences())
    ad = np.asarray(jax.flatten_util.ravel_pytree(dtheta(x, None, ff.params))[0])[used]
    agree = float(np.max(np.abs(fd - ad) / np.maximum(np.abs(ad), 1e-3)))

    body = "\n".join([
        "## SMIRNOFF typing and parameter gradients (openff-2.2.1)",
        "",
        "Command: `python benchmarks/bench_smirnoff.py` (all numbers from one run).",
        machine_line(),
        "",
        "| what | chronograd | reference | reference | ratio (reference time / chronograd) |",
        "|---|---|---|---|---|",
        f"| label {n} MiniDrugBank molecules | {n / t_label_cg:.0f} mol/s | OpenFF toolkit "
        f"label_molecules | {n / t_label_off:.0f} mol/s | {t_label_off / t_label_cg:.1f} |",
        f"| type {n} molecules into systems (charges given) | {n / t_cs:.1f} mol/s | "
        f"Interchange.from_smirnoff | {n / t_ic:.1f} mol/s | {t_ic / t_cs:.1f} |",
        f"| type acetanilide + {n_water} waters ({n_atoms_box} atoms) | {t_cs_box:.2f} s | "
        f"Interchange.from_smirnoff | {t_ic_box:.2f} s | {t_ic_box / t_cs_box:.1f} |",
        f"| label villin HP35 ({peptide.n_atoms} atoms, one molecule) | {t_label_prot:.2f} s |"
        f" OpenFF toolkit label_molecules | {t_label_prot_off:.2f} s |"
        f" {t_label_prot_off / t_label_prot:.1f} |",
        f"| type villin HP35 + {n_water} waters ({peptide.n_atoms + 3 * n_water} atoms) |"
        f" {t_cs_prot:.2f} s | Interchange.from_smirnoff | {t_ic_prot:.2f} s |"
        f" {t_ic_prot / t_cs_prot:.1f} |",
        "",
        "The peptide's labels (bonds, angles, torsions, impropers, vdW) are identical to the"
        " toolkit's (checked in the run). It is built by RDKit from its sequence with neutral"
        " termini and side chains; no conformer is needed for typing.",
        "",
        f"Gradient costs ({mol.n_atoms}-atom drug-like molecule, vacuum, float64, jit-compiled):",
        "",
        "| quantity | time |",
        "|---|---|",
        f"| energy + forces | {t_ef * 1e3:.2f} ms |",
        f"| dU/dtheta over all {flat.size} parameters (one reverse pass) | {t_grad * 1e3:.2f} ms "
        f"({t_grad / t_ef:.2f}x energy+forces) |",
        f"| central finite differences over the {len(used)} used parameters "
        f"({2 * len(used)} energies) | {t_fd:.2f} s |",
        f"| speed-up of the gradient over finite differences | {t_fd / t_grad:.0f}x |",
        "",
        f"Finite differences and the gradient agree to {agree:.1e} (max relative difference).",
    ])
    write_section("smirnoff", body)


if __name__ == "__main__":
    main()
