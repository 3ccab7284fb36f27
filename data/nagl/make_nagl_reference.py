"""Reference NAGL charges for chronograd's tests (openff-nagl itself, run once, not at test time).

Writes ``nagl_reference.json``: for each molecule its mapped SMILES (atom order), the charges the
OpenFF toolkit assigns with ``openff-gnn-am1bcc-1.0.0.pt`` (lookup table, then the GNN;
normalized to the formal charge, exactly as Interchange applies a force field's NAGLCharges
section), the GNN's own output without the lookup table, and the resonance-averaged formal
charges NAGL feeds the network.

openff-nagl needs PyTorch, which chronograd does not; run this script in its own environment:

    python3 -m venv /tmp/naglref
    /tmp/naglref/bin/pip install torch rdkit acellera-openff-nagl==0.5.5 \
        openff-nagl-models==2025.9.0 acellera-openff-toolkit==0.18.0.post2 \
        acellera-openff-units==0.3.2.post3 acellera-openff-utilities==0.1.16.post1 \
        pytorch_lightning networkx xmltodict cachetools python-constraint pydantic pint pyyaml
    /tmp/naglref/bin/python data/nagl/make_nagl_reference.py

Molecules: the curated set of tests/data/diverse_molecules.smi, MiniDrugBank (the OpenFF
toolkit's test set) and a few ions, zwitterions and resonance cases listed below.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import signal
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
MODEL = "openff-gnn-am1bcc-1.0.0.pt"
MODEL_HASH = "7981e7f5b0b1e424c9e10a40d9e7606d96dcd3dd2b095cb4eeff6829f92238ee"

# charged groups and resonance (carboxylate, amidinium, guanidinium, nitro, sulfonate, phosphate,
# azide, N-oxide, enolate, thiolate), halides and small molecules from the lookup table
EXTRA = [
    ("CC(=O)[O-]", "acetate"), ("NC(=[NH2+])c1ccccc1", "benzamidinium"),
    ("NC(N)=[NH2+]", "guanidinium"), ("C[N+](=O)[O-]", "nitromethane"),
    ("c1ccc(cc1)S(=O)(=O)[O-]", "benzenesulfonate"), ("COP(=O)([O-])OC", "dimethylphosphate"),
    ("CN=[N+]=[N-]", "methylazide"), ("[O-][n+]1ccccc1", "pyridine_n_oxide"),
    ("CC([O-])=CC(C)=O", "acac_enolate"), ("CC[S-]", "ethanethiolate"),
    ("[NH3+]CC(=O)[O-]", "glycine_zwitterion"), ("C[NH3+]", "methylammonium"),
    ("[Cl-]", "chloride"), ("[Br-]", "bromide"), ("O", "water"), ("CO", "methanol"),
    ("CCO", "ethanol"), ("c1ccccc1", "benzene"), ("CC(=O)N", "acetamide"),
    ("OC(=O)c1ccccc1C(=O)[O-]", "hydrogen_phthalate"), ("[O-]c1ccccc1", "phenolate"),
    ("CS(C)=O", "dmso"), ("CC#N", "acetonitrile"), ("FC(F)(F)c1ccccc1", "trifluorotoluene"),
    ("OP(=O)(O)O", "phosphoric_acid"), ("CSSC", "dimethyldisulfide"),
    ("C1=CC(=O)C=CC1=O", "benzoquinone"), ("c1cc[nH]c1", "pyrrole"),
    ("Ic1ccccc1", "iodobenzene"), ("[O-]C(=O)CCC(=O)[O-]", "succinate"),
]


def molecules():
    from openff.toolkit import Molecule

    smi = (HERE.parent.parent / "tests/data/diverse_molecules.smi").read_text().splitlines()
    out = []
    for line in smi:
        if line.strip() and not line.startswith("#"):
            s, name = line.split()
            out.append((name, Molecule.from_smiles(s, allow_undefined_stereo=True)))
    out += [(name, Molecule.from_smiles(s, allow_undefined_stereo=True)) for s, name in EXTRA]
    path = importlib.resources.files("openff.toolkit") / "data/molecules/MiniDrugBank.sdf"
    drugs = Molecule.from_file(str(path), allow_undefined_stereo=True)
    out += [(m.name or f"drugbank{k}", m) for k, m in enumerate(drugs)]
    return out


def main() -> None:
    from openff.nagl import GNNModel
    from openff.nagl.features.atoms import AtomAverageFormalCharge
    from openff.nagl_models._dynamic_fetch import get_model
    from openff.toolkit.utils.nagl_wrapper import NAGLToolkitWrapper
    from openff.units import unit

    path = get_model(filename=MODEL, file_hash=MODEL_HASH)
    model = GNNModel.load(path, eval_mode=True)
    records, skipped = [], []

    def too_slow(*_):
        raise TimeoutError("openff-nagl ran over 60 s (resonance enumeration)")

    signal.signal(signal.SIGALRM, too_slow)
    for k, (name, mol) in enumerate(molecules()):
        mol = type(mol)(mol)
        signal.alarm(60)  # NAGL's simple-path enumeration is exponential on large conjugation
        try:
            if k < 5:  # the toolkit's own path (it reloads the model file on every call)
                mol.assign_partial_charges(MODEL, toolkit_registry=NAGLToolkitWrapper())
            else:  # the same steps with the model loaded once
                q = model.compute_property(mol, readout_name="am1bcc_charges",
                                           check_domains=True, error_if_unsupported=True)
                mol.partial_charges = q.astype(float) * unit.elementary_charge
                mol._normalize_partial_charges()
            bare = type(mol)(mol)
            bare.partial_charges = None
            gnn = model.compute_property(bare, check_domains=False, check_lookup_table=False)
            fc = AtomAverageFormalCharge().encode(bare).numpy().ravel()
        except Exception as err:  # outside the domain, or too slow: recorded as such
            skipped.append({"name": name, "mapped_smiles": mol.to_smiles(mapped=True),
                            "error": str(err).splitlines()[0][:200]})
            continue
        finally:
            signal.alarm(0)
        table = model.lookup_tables["am1bcc_charges"]
        print(k, name, file=sys.stderr, flush=True)
        records.append({
            "name": name,
            "mapped_smiles": mol.to_smiles(mapped=True),
            "charges": [float(q) for q in mol.partial_charges.m],
            "gnn_charges": [float(q) for q in np.asarray(gnn, float)],
            "average_formal_charge": [float(q) for q in fc],
            "in_lookup_table": mol.to_inchi(fixed_hydrogens=True) in table.properties,
        })
    versions = {p: importlib.metadata.version(p) for p in
                ("acellera-openff-nagl", "openff-nagl-models", "acellera-openff-toolkit",
                 "torch", "rdkit")}
    out = {"model_file": MODEL, "model_file_hash": MODEL_HASH, "versions": versions,
           "generated_by": "data/nagl/make_nagl_reference.py", "molecules": records,
           "outside_domain": skipped}
    (HERE / "nagl_reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"{len(records)} molecules, {len(skipped)} outside the model's domain",
          file=sys.stderr)


if __name__ == "__main__":
    main()
