"""Make the shipped small molecules: one RDKit conformer each (ETKDGv3, fixed seed, MMFF94
optimized), written as SDF with explicit hydrogens. Run: python data/molecules/make_molecules.py
"""

from pathlib import Path

from rdkit import Chem
from rdkit.Chem import AllChem

MOLECULES = {"aspirin": "CC(=O)Oc1ccccc1C(=O)O"}


def main():
    here = Path(__file__).parent
    for name, smiles in MOLECULES.items():
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        params = AllChem.ETKDGv3()
        params.randomSeed = 20261122
        AllChem.EmbedMolecule(mol, params)
        AllChem.MMFFOptimizeMolecule(mol)
        mol.SetProp("_Name", name)
        with Chem.SDWriter(str(here / f"{name}.sdf")) as w:
            w.write(mol)


if __name__ == "__main__":
    main()
