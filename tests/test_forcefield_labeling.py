"""SMIRNOFF parameter assignment identical to the OpenFF toolkit's label_molecules."""

import pytest
from smirnoff_reference import _offff, diverse_molecules, to_chronograd

from chronograd.forcefield.labeling import label_molecule
from chronograd.forcefield.offxml import read_offxml

HANDLERS = ("Constraints", "Bonds", "Angles", "ProperTorsions", "ImproperTorsions", "vdW")


@pytest.mark.parametrize("offxml", [
    "openff-2.2.1.offxml",
    # the same SMIRKS without the Constraints handler: checked in the slow target
    pytest.param("openff_unconstrained-2.2.1.offxml", marks=pytest.mark.slow),
])
def test_labels_equal_openff_toolkit_on_diverse_molecules(offxml):
    ff = read_offxml(offxml)
    reference = _offff(offxml)
    molecules = diverse_molecules()
    assert len(molecules) >= 200
    compared, mismatches = 0, []
    for name, off in molecules:
        ref = reference.label_molecules(off.to_topology())[0]
        ours = label_molecule(ff, to_chronograd(off, name)).assignments
        for handler in HANDLERS:
            want = {tuple(k): v.id for k, v in ref[handler].items()}
            got = {k: ff.handlers[handler].parameters[i].id for k, i in ours[handler].items()}
            compared += len(want)
            if want != got:
                mismatches.append((name, handler))
    assert not mismatches, mismatches[:10]
    assert compared > 20000


def test_labels_equal_openff_toolkit_on_a_protein_sized_peptide():
    """The 35-residue villin headpiece (577 atoms, one molecule) from its sequence."""
    from openff.toolkit import Molecule as OFFMolecule
    from rdkit import Chem

    rd = Chem.AddHs(Chem.MolFromSequence("LSDEDFKAVFGMTRSAFANLPLWKQQNLKKEKGLF"))
    off = OFFMolecule.from_rdkit(rd, allow_undefined_stereo=True)
    ff = read_offxml("openff-2.2.1.offxml")
    ref = _offff("openff-2.2.1.offxml").label_molecules(off.to_topology())[0]
    ours = label_molecule(ff, to_chronograd(off, "villin")).assignments
    assert off.n_atoms == 577
    for handler in HANDLERS:
        want = {tuple(k): v.id for k, v in ref[handler].items()}
        got = {k: ff.handlers[handler].parameters[i].id for k, i in ours[handler].items()}
        assert got == want, handler
