"""The bad-input corpus: malformed, hostile or physically impossible inputs through the
``chronograd`` command, each with the one-line message it must get.

Every case builds its input files in an empty folder, runs the command there and expects exit
code 1 (2 for a usage error), one line starting with "error: " that contains ``expect``, no
traceback, and no new file in the folder. ``tests/test_bad_input.py`` runs them; the table in
``docs/bad-input.md`` is written from them by

    python tests/bad_input_corpus.py > docs/bad-input.md

and a test checks that each row still shows the message the case gets.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
QM = HERE.parent / "data" / "qm"
SAGE = "openff-2.2.1.offxml"
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "chronograd" / "ml" / "models" / "default"
MARKER = "PLANTED_CODE_RAN"  # a folder that a planted pickle would create


@dataclass(frozen=True)
class Case:
    id: str
    tried: str  # the input, in words (the table's first column)
    build: object  # build(folder) -> argv
    expect: str  # a fragment of the one-line message
    code: int = 1


# ---- inputs ------------------------------------------------------------------------------------

@cache
def sage_text() -> str:
    from chronograd.forcefield.offxml import resolve_offxml

    return resolve_offxml(SAGE).read_text()


def offxml(d: Path, old: str, new: str, name: str = "ff.offxml") -> str:
    text = sage_text()
    assert old in text, old
    (d / name).write_text(text.replace(old, new, 1))
    return name


@cache
def ethanol_sdf_text() -> str:
    from rdkit import Chem

    from chronograd.forcefield.charges import gasteiger_charges
    from chronograd.topology import Molecule

    mol = Molecule.from_smiles("CCO", name="ethanol")
    rd = Chem.Mol(mol.rdmol)
    for atom, q in zip(rd.GetAtoms(), gasteiger_charges(mol), strict=True):
        atom.SetDoubleProp("PartialCharge", float(q))
    Chem.CreateAtomDoublePropertyList(rd, "PartialCharge")
    out = io.StringIO()
    with Chem.SDWriter(out) as writer:
        writer.write(rd)
    return out.getvalue()


def model_copy(d: Path) -> str:
    """A copy of the shipped parameter model in the case's folder (a relative name)."""
    import shutil

    shutil.copytree(DEFAULT_MODEL, d / "pm", dirs_exist_ok=True)
    return "pm"


def sdf(d: Path, text: str | None = None, name: str = "mol.sdf") -> str:
    (d / name).write_text(ethanol_sdf_text() if text is None else text)
    return name


def propylbenzene_sdf(d: Path, *, flat: bool = False) -> str:
    """propylbenzene (atoms 0-2 the propyl chain, 3-8 the ring) with a 3D conformer, or with
    every coordinate zero (``flat``)."""
    from rdkit import Chem

    from chronograd.topology import Molecule

    rd = Chem.Mol(Molecule.from_smiles("CCCc1ccccc1", name="propylbenzene").rdmol)
    if flat:
        conf = rd.GetConformer()
        for k in range(rd.GetNumAtoms()):
            conf.SetAtomPosition(k, (0.0, 0.0, 0.0))
    Chem.MolToMolFile(rd, str(d / "propylbenzene.sdf"))
    return "propylbenzene.sdf"


def smiles_sdf(smiles: str) -> str:
    """SDF text of ``smiles`` with hydrogens and a 3D conformer."""
    from rdkit import Chem

    from chronograd.topology import Molecule

    return Chem.MolToMolBlock(Molecule.from_smiles(smiles, name=smiles).rdmol) + "$$$$\n"


@cache
def system_json_text() -> str:
    import chronograd as cg
    from chronograd.system.serialize import system_to_dict
    from chronograd.topology import Molecule

    mol = Molecule.from_smiles("CCO")
    system = cg.ForceField(SAGE).create_system(mol, charges="gasteiger")
    return json.dumps(system_to_dict(system))


def system_json(d: Path, edit=None, name: str = "system.json") -> str:
    data = json.loads(system_json_text())
    if edit is not None:
        edit(data)
    (d / name).write_text(json.dumps(data))
    return name


def pdb(d: Path, n_atoms: int, name: str = "conf.pdb", edit=None) -> str:
    """A PDB of ``n_atoms`` atoms on a line, 0.15 nm apart."""
    lines = [f"HETATM{k + 1:5d}  C   MOL A   1    {1.5 * k:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00"
             "  0.00           C" for k in range(n_atoms)]
    if edit is not None:
        lines = edit(lines)
    (d / name).write_text("\n".join(lines + ["END"]) + "\n")
    return name


def json_system_run(d: Path, edit=None, text_edit=None) -> list[str]:
    """``simulate SYSTEM.json`` of an edited system."""
    name = system_json(d, edit)
    if text_edit is not None:
        (d / name).write_text(text_edit((d / name).read_text()))
    conf = pdb(d, 9)
    return ["simulate", name, "--positions", conf, "--steps", "10", "--report-every", "10",
            "-o", "run.dcd"]


@cache
def water_xml_text() -> str:
    import openmm

    system = openmm.System()
    nb = openmm.NonbondedForce()
    bonds = openmm.HarmonicBondForce()
    for w in range(2):
        for mass, q in ((15.999, -0.834), (1.008, 0.417), (1.008, 0.417)):
            system.addParticle(mass)
            nb.addParticle(q, 0.315 if mass > 2 else 1.0, 0.636 if mass > 2 else 0.0)
        o = 3 * w
        for h in (o + 1, o + 2):
            bonds.addBond(o, h, 0.09572, 462750.4)
            nb.addException(o, h, 0.0, 1.0, 0.0)
        nb.addException(o + 1, o + 2, 0.0, 1.0, 0.0)
    system.addForce(bonds)
    system.addForce(nb)
    return openmm.XmlSerializer.serialize(system)


def water_files(d: Path, xml_edit=None, pdb_edit=None) -> list[str]:
    xml = water_xml_text()
    if xml_edit is not None:
        xml = xml_edit(xml)
    (d / "water.xml").write_text(xml)
    coords = [(0.0, 0.0, 0.0), (0.9572, 0.0, 0.0), (-0.24, 0.927, 0.0),
              (3.0, 0.0, 0.0), (3.9572, 0.0, 0.0), (2.76, 0.927, 0.0)]
    names = ["O  ", "H1 ", "H2 "]
    lines = [f"HETATM{k + 1:5d}  {names[k % 3]} HOH A{k // 3 + 1:4d}    "
             f"{x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           {'O' if k % 3 == 0 else 'H'}"
             for k, (x, y, z) in enumerate(coords)]
    if pdb_edit is not None:
        lines = pdb_edit(lines)
    (d / "water.pdb").write_text("\n".join(lines + ["END"]) + "\n")
    return ["energy", "--openmm", "water.xml", "--positions", "water.pdb"]


def _with_custom_bond(xml: str, expression: str) -> str:
    """The water System XML with one more force: a CustomBondForce of ``expression``."""
    import openmm

    force = openmm.CustomBondForce(expression)
    force.addBond(0, 1, [])
    text = openmm.XmlSerializer.serialize(force).split("\n", 1)[1]  # no XML declaration
    return xml.replace("</Forces>", text + "</Forces>", 1)


def torsiondrive_state(d: Path) -> str:
    """A torsiondrive state JSON (no SMILES: the atom order needs --smiles)."""
    (d / "td.json").write_text(json.dumps({
        "dihedrals": [[0, 1, 2, 3]], "grid_spacing": [180], "elements": ["C", "C", "O", "H"],
        "init_coords": [[0.0] * 12],
        "grid_status": {"0": [[[0.0] * 12, [0.0] * 12, -1.0]]}}))
    return "td.json"


def fit_config(d: Path, extra: str = "", out: str = "out") -> str:
    (d / "fit.toml").write_text(f"""
[forcefield]
file = "openff_unconstrained-2.2.1.offxml"
charges = "gasteiger"

[[parameters]]
handler = "ProperTorsions"
attributes = ["k"]

[[targets]]
name = "scans"
type = "torsion_profile"
dataset = "{QM}"
records = ["scan-ethanol"]

[optimizer]
method = "lbfgs"
iterations = 2

[output]
directory = "{out}"
{extra}""")
    return "fit.toml"


class PlantedCode:
    """Unpickling this creates the MARKER folder: proof that code would run."""

    def __reduce__(self):
        import os

        return (os.mkdir, (MARKER,))


def planted_pickle() -> bytes:
    return pickle.dumps({"config_sha256": "x", "payload": PlantedCode()})


def liquid_config(d: Path, experiment: str) -> str:
    (d / "fit.toml").write_text(f"""[forcefield]
file = "{SAGE}"
[[parameters]]
ids = ["n-tip3p-O"]
attributes = ["sigma"]
[[targets]]
name = "water"
type = "liquid"
smiles = "O"
{experiment}
[optimizer]
method = "lbfgs"
[output]
directory = "out"
""")
    return "fit.toml"


def fit_resume(d: Path, make_checkpoint) -> list[str]:
    cfg = fit_config(d)
    (d / "out").mkdir()
    make_checkpoint(d / "out", d / cfg)
    return ["fit", cfg, "--resume", "--quiet"]


def config_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_text().encode()).hexdigest()


def valid_fit_checkpoint(out: Path, cfg: Path, *, sha: str | None = None) -> Path:
    from chronograd.fit.checkpoint import write_fit_checkpoint

    write_fit_checkpoint(out / "checkpoint.npz", {"iteration": 0, "state": {"phi": np.zeros(3)},
                                                 "log": []},
                         config_sha256=sha or config_sha(cfg))
    return out / "checkpoint.npz"


def edit_archive(path: Path) -> None:
    """Change one number inside a checkpoint archive, keeping the zip file intact."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    name = next(k for k in arrays if k != "__header__")
    arrays[name] = arrays[name] + 1
    np.savez(path, **arrays)


def old_md_checkpoint(path: Path) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, positions=np.zeros((3, 3)), step=np.asarray(10))


def qm_manifest_not_json(d: Path) -> list[str]:
    argv = qm_dataset(d)
    (d / "qm" / "manifest.json").write_text("{units: 1")
    return argv


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def object_array_npz(path: Path) -> None:
    np.savez(path, x=np.array([PlantedCode()], dtype=object))


def qm_dataset(d: Path, edit_meta=None, edit_arrays=None) -> list[str]:
    q = d / "qm"
    q.mkdir()
    meta = json.loads((QM / "manifest.json").read_text())
    meta["records"] = [r for r in meta["records"] if r["id"] == "scan-ethanol"]
    with np.load(QM / "qm_data.npz") as data:
        arrays = {k: data[k] for k in data.files if k.startswith("scan-ethanol/")}
    if edit_meta is not None:
        edit_meta(meta)
    if edit_arrays is not None:
        edit_arrays(arrays)
    (q / "manifest.json").write_text(json.dumps(meta) if isinstance(meta, dict) else meta)
    np.savez(q / "qm_data.npz", **arrays)
    text = (d / fit_config(d)).read_text().replace(str(QM), "qm")
    (d / "fit.toml").write_text(text)
    return ["fit", "fit.toml", "--quiet"]


def md_checkpoint(d: Path, write) -> list[str]:
    write(d / "run.chk")
    return ["simulate", "--ff", SAGE, "--smiles", "O", "--steps", "20", "--report-every", "10",
            "--timestep", "1fs", "-o", "run.dcd", "--checkpoint", "run.chk", "--resume"]


def md_archive_other_system(path: Path) -> None:
    from chronograd.dynamics.reporters import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
    from chronograd.interop.archive import write_archive

    write_archive(path, {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                         "system_sha256": "0" * 64, "integrator": "langevin-middle",
                         "step": 10, "has_box": False}, {"positions": np.zeros((3, 3))})


def simulate_ethanol(*extra) -> list[str]:
    return ["simulate", "--ff", SAGE, "--smiles", "CCO", "--steps", "100", "--report-every",
            "50", "-o", "run.dcd", *extra]


def billion_laughs(root: str) -> str:
    return ('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
            '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>\n'
            f"<{root}>&lol2;</{root}>\n")


def external_entity(root: str) -> str:
    return ('<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
            f"<{root}>&x;</{root}>\n")


def _set(path, value):
    def edit(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _bond_to(atom):
    def edit(data):
        data["terms"][0]["atoms"][1][1] = atom
    return edit


# ---- the cases ---------------------------------------------------------------------------------

CASES = [
    # code from data files
    Case("fit-resume-planted-pickle", "`fit --resume` with a planted `checkpoint.pkl` whose"
         " unpickling runs code", lambda d: fit_resume(
             d, lambda out, cfg: (out / "checkpoint.pkl").write_bytes(planted_pickle())),
         "checkpoint.pkl is an older, pickled format that chronograd no longer reads"),
    Case("fit-resume-object-array", "`fit --resume` with a `checkpoint.npz` holding a pickled"
         " object array", lambda d: fit_resume(
             d, lambda out, cfg: object_array_npz(out / "checkpoint.npz")),
         "holds Python objects, which chronograd does not read"),
    Case("fit-resume-renamed-pickle", "`fit --resume` with a pickle renamed to"
         " `checkpoint.npz`", lambda d: fit_resume(
             d, lambda out, cfg: (out / "checkpoint.npz").write_bytes(planted_pickle())),
         "it looks like a pickle, which chronograd never reads"),
    Case("qm-npz-object-array", "QM arrays file with an object array", lambda d: qm_dataset(
        d, edit_arrays=lambda a: a.update({"scan-ethanol/energy": np.array(
            [PlantedCode()], dtype=object)})), "holds Python objects"),
    Case("offxml-entity-expansion", "`.offxml` with a DTD and nested entities (billion"
         " laughs)", lambda d: ["energy", "--ff", (d / "bomb.offxml").write_text(
             billion_laughs("SMIRNOFF")) and "bomb.offxml", sdf(d)], "refused XML construct"),
    Case("openmm-xml-external-entity", "OpenMM XML with an external entity (file:///etc/passwd)",
         lambda d: water_files(d, xml_edit=lambda x: external_entity("System")),
         "refused XML construct"),
    # silent wrong answers
    Case("system-json-bond-to-atom-9999", "System JSON with a bond to atom 9999 (9 atoms)",
         lambda d: json_system_run(d, _bond_to(9999)), "refers to particle 9999, but the system"
         " has 9 particles"),
    Case("system-json-negative-index", "System JSON with a bond to atom -1",
         lambda d: json_system_run(d, _bond_to(-1)), "refers to particle -1"),
    Case("openmm-xml-bond-to-atom-9999", "OpenMM XML with a bond to particle 9999",
         lambda d: water_files(d, xml_edit=lambda x: x.replace('p2="1"', 'p2="9999"', 1)),
         "refers to particle 9999"),
    Case("offxml-bond-k-in-angstrom", "`.offxml` bond k = \"1.0 * angstrom\"",
         lambda d: ["energy", "--ff", offxml(
             d, 'k="430.4753865522 * kilocalorie_per_mole ** 1 * angstrom ** -2"',
             'k="1.0 * angstrom"'), sdf(d)],
         "parameter b1 (Bonds), attribute k='1.0 * angstrom': quantity '1.0 * angstrom' has"
         " dimension length, expected energy/(amount*length^2)"),
    Case("offxml-nan-parameter", "`.offxml` with length = \"nan * angstrom\"",
         lambda d: ["energy", "--ff", offxml(d, 'length="1.533682189836 * angstrom ** 1"',
                                             'length="nan * angstrom"'), sdf(d)],
         "parameter b1 (Bonds), attribute length='nan * angstrom': quantity"
         " 'nan * angstrom' is not a finite number"),
    Case("offxml-infinite-scale", "`.offxml` vdW scale14=\"inf\"",
         lambda d: ["energy", "--ff", offxml(d, 'scale14="0.5"', 'scale14="inf"'), sdf(d)],
         "<vdW> scale14='inf' is not a finite number"),
    Case("openmm-custom-force-unknown-function",
         "OpenMM XML with a CustomBondForce `bessel(r)`",
         lambda d: water_files(d, xml_edit=lambda x: _with_custom_bond(x, "bessel(r)")),
         "the function 'bessel' is not supported"),
    Case("openmm-custom-force-unknown-variable", "OpenMM XML with a CustomBondForce `k*r^2`"
         " and no parameter k", lambda d: water_files(
             d, xml_edit=lambda x: _with_custom_bond(x, "k*r^2")),
         "the expression uses 'k', which is neither a variable of the force nor one of its"
         " parameters"),
    Case("bespoke-ring-bond", "`bespoke` with --bond on a ring bond", lambda d: [
        "bespoke", propylbenzene_sdf(d), "--bond", "3-4", "-o", "out-b"],
         "bond 3-4 (C-C) is in a ring; ring bonds are not rotatable"),
    Case("bespoke-terminal-bond", "`bespoke` with --bond on a methyl rotor", lambda d: [
        "bespoke", propylbenzene_sdf(d), "--bond", "0-1", "-o", "out-b"],
         "atom 0 (C) carries no other heavy atom"),
    Case("bespoke-double-bond", "`bespoke` with --bond on a double bond", lambda d: [
        "bespoke", sdf(d, smiles_sdf("CC=CC")), "--bond", "1-2", "-o", "out-b"],
         "bond 1-2 (C-C) is a double bond; only single bonds are rotatable"),
    Case("bespoke-no-coordinates", "`bespoke` on an SDF whose coordinates are all zero",
         lambda d: ["bespoke", propylbenzene_sdf(d, flat=True), "-o", "out-b"],
         "the molecule has no 3D coordinates"),
    Case("qm-import-torsiondrive-without-smiles", "`qm import torsiondrive` without --smiles",
         lambda d: ["qm", "import", "torsiondrive", torsiondrive_state(d), "-o", "ds"],
         "a torsiondrive state holds no SMILES; pass the mapped SMILES"),
    Case("openmm-xml-nan-charge", "OpenMM XML with a NaN charge",
         lambda d: water_files(d, xml_edit=lambda x: x.replace('q="-.834"', 'q="nan"', 1)),
         "charge[0] is nan; parameters must be finite"),
    Case("coincident-atoms-pdb", "PDB with two atoms at the same position",
         lambda d: water_files(d, pdb_edit=lambda ls: ls[:4] + [ls[4][:30] + ls[3][30:54]
                                                                   + ls[4][54:]] + ls[5:]),
         "water.pdb: atoms 3 and 4 are at the same position"),
    Case("coincident-atoms-sdf", "SDF with two atoms at the same position",
         lambda d: ["energy", "--ff", SAGE, sdf(d, "\n".join(
             (lambda ls: ls[:5] + [ls[4][:30] + ls[5][30:]] + ls[6:])(
                 ethanol_sdf_text().splitlines())) + "\n")],
         "mol.sdf: atoms 0 and 1 are at the same position"),
    Case("offxml-duplicate-id", "`.offxml` with two bonds of id b1", lambda d: [
        "energy", "--ff", offxml(d, 'id="b2"', 'id="b1"'), sdf(d)],
         "parameter id 'b1' is used twice in <Bonds> (parameters 1 and 2)"),
    Case("sdf-zero-atoms", "SDF record with no atoms", lambda d: [
        "energy", "--ff", SAGE, sdf(d, "\n  RDKit\n\n  0  0  0  0  0  0  0  0  0  0999 V2000\n"
                                       "M  END\n$$$$\n")], "record 1: molecule '' has no atoms"),
    # tracebacks before
    Case("offxml-missing-length", "`.offxml` bond without length", lambda d: [
        "energy", "--ff", offxml(d, 'length="1.533682189836 * angstrom ** 1" ', ""), sdf(d)],
         "parameter b1 (Bonds): missing required attribute 'length'"),
    Case("offxml-torsion-missing-phase", "`.offxml` torsion with k2 but no phase2", lambda d: [
        "energy", "--ff", offxml(d, 'idivf1="1.0"></Proper>',
                                 'idivf1="1.0" k2="1.0 * kilocalorie_per_mole"'
                                 ' periodicity2="2"></Proper>'), sdf(d)],
         "parameter t1 (ProperTorsions): every k<n> needs phase<n>"),
    Case("offxml-unknown-attribute", "`.offxml` bond attribute misspelled `lenght`", lambda d: [
        "energy", "--ff", offxml(d, 'length="1.533682189836', 'lenght="1.533682189836'),
        sdf(d)], "parameter b1 (Bonds): unknown attribute 'lenght'"),
    Case("offxml-unsupported-potential", "`.offxml` vdW potential=\"Buckingham\"",
         lambda d: ["energy", "--ff", offxml(d, 'potential="Lennard-Jones-12-6"',
                                             'potential="Buckingham"'), sdf(d)],
         "<vdW> potential='Buckingham' is not supported"),
    Case("offxml-handler-twice", "`.offxml` with two <Bonds> sections", lambda d: [
        "energy", "--ff", offxml(d, "</Bonds>", "</Bonds><Bonds version=\"0.4\""
                                 " potential=\"harmonic\"></Bonds>"), sdf(d)],
         "the <Bonds> handler appears twice"),
    Case("offxml-smirks-parse-error", "`.offxml` SMIRKS that RDKit cannot parse", lambda d: [
        "energy", "--ff", offxml(d, 'smirks="[#6X4:1]-[#6X4:2]" id="b1"',
                                 'smirks="[#6X4:1]-[#6X4:2" id="b1"'), sdf(d)],
         "ff.offxml: parameter b1 (Bonds): RDKit rejected the SMIRKS '[#6X4:1]-[#6X4:2'"),
    Case("offxml-smirks-tag-count", "`.offxml` bond SMIRKS with three tagged atoms", lambda d: [
        "energy", "--ff", offxml(d, 'smirks="[#6X4:1]-[#6X4:2]" id="b1"',
                                 'smirks="[#6X4:1]-[#6X4:2]-[#1:3]" id="b1"'), sdf(d)],
         "parameter b1 (Bonds): SMIRKS '[#6X4:1]-[#6X4:2]-[#1:3]' has 3 tagged atoms; <Bonds>"
         " needs 2 tagged atoms"),
    Case("offxml-no-electrostatics", "`.offxml` without an <Electrostatics> section",
         lambda d: ["energy", "--ff", offxml(d, sage_text()[sage_text().index(
             "<Electrostatics"):sage_text().index("</Electrostatics>") + 17], ""), sdf(d)],
         "ff.offxml: no <Electrostatics> handler"),
    Case("offxml-malformed", "`.offxml` cut off mid-file", lambda d: [
        "energy", "--ff", (d / "cut.offxml").write_text(sage_text()[:5000]) and "cut.offxml",
        sdf(d)], "cut.offxml: line"),
    Case("sdf-empty-file", "empty SDF file", lambda d: ["energy", "--ff", SAGE, sdf(d, "")],
         "mol.sdf: the file is empty"),
    Case("sdf-not-a-molecule", "SDF that is random text", lambda d: [
        "energy", "--ff", SAGE, sdf(d, "hello\nworld\n")], "mol.sdf: no molecules found"),
    Case("sdf-radical", "SDF of a methyl radical", lambda d: [
        "energy", "--ff", SAGE, sdf(d, "\n  RDKit          3D\n\n  1  0  0  0  0  0  0  0  0"
                                       "  0999 V2000\n    0.0000    0.0000    0.0000 C   0  0"
                                       "  0  0  0  3  0  0  0  0  0  0\nM  RAD  1   1   2\n"
                                       "M  END\n$$$$\n")], "radicals are not supported"),
    Case("smiles-empty", "`parameterize --smiles \"\"`", lambda d: [
        "parameterize", "--smiles", "", "--ff", SAGE, "-o", "s.json"], "empty SMILES ''"),
    Case("smiles-radical", "`parameterize --smiles [CH3]`", lambda d: [
        "parameterize", "--smiles", "[CH3]", "--ff", SAGE, "-o", "s.json"],
         "atom index 0 (C) has 1 unpaired electron(s); radicals are not supported"),
    Case("system-json-atoms-not-a-list", "System JSON whose bond atoms are a number",
         lambda d: json_system_run(d, _set(["terms", 0, "atoms"], 5)),
         "terms[0] (Bonds) atoms: expected a list of integers of shape [n, 2]"),
    Case("system-json-ragged-atoms", "System JSON with a bond of three atoms",
         lambda d: json_system_run(d, _set(["terms", 0, "atoms", 0], [0, 1, 2])),
         "terms[0] (Bonds) atoms: expected a list of integers of shape [n, 2]"),
    Case("system-json-short-params", "System JSON with fewer bond k than bonds",
         lambda d: json_system_run(d, _set(["terms", 0, "params", "k"], [1.0])),
         "term 'Bonds': k must be 2 numbers, got shape (1,)"),
    Case("system-json-string-param", "System JSON with a string among the charges",
         lambda d: json_system_run(d, _set(["terms", 4, "params", "charge", 0], "x")),
         "terms[4] (Nonbonded) params.charge: expected numbers, got strings"),
    Case("system-json-list-as-name", "System JSON whose term name is a list",
         lambda d: json_system_run(d, _set(["terms", 0, "name"], [])),
         "terms[0]: name must be a non-empty string"),
    Case("system-json-float-index", "System JSON with atom index 1.5",
         lambda d: json_system_run(d, _set(["terms", 0, "atoms", 0], [0, 1.5])),
         "terms[0] (Bonds) atoms: expected integers, got floats"),
    Case("system-json-negative-mass", "System JSON with a negative mass",
         lambda d: json_system_run(d, _set(["masses", 0], -12.0)),
         "particle 0 has mass -12.0; masses must be finite and >= 0 amu"),
    Case("system-json-overflow", "System JSON with a mass of 1e999",
         lambda d: json_system_run(d, text_edit=lambda t: t.replace(
             '"masses": [', '"masses": [1e999, ', 1).replace(', 12.011', '', 1)),
         "the number 1e999 overflows (not finite)"),
    Case("system-json-not-json", "System JSON cut off mid-file", lambda d: [
        "simulate", (d / "s.json").write_text(system_json_text()[:300]) and "s.json",
        "--positions", pdb(d, 9), "--steps", "10", "--report-every", "10", "-o", "run.dcd"],
         "s.json: line 1, column"),
    Case("pdb-atom-count", "PDB with 8 atoms for a 9-atom System JSON", lambda d: [
        "simulate", system_json(d), "--positions", pdb(d, 8), "--steps", "10",
        "--report-every", "10", "-o", "run.dcd"],
         "conf.pdb: the system has 9 particles but 8 positions were given"),
    Case("pdb-binary", "PDB that is binary data", lambda d: water_files(d) and [
        "energy", "--openmm", "water.xml", "--positions",
        (d / "bin.pdb").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe") and "bin.pdb"],
         "bin.pdb: not a text file"),
    Case("fit-checkpoint-truncated", "`fit --resume` with a truncated `checkpoint.npz`",
         lambda d: fit_resume(d, lambda out, cfg: truncate(valid_fit_checkpoint(out, cfg))),
         "not a readable fit checkpoint; the file is truncated or corrupt"),
    Case("fit-checkpoint-edited", "`fit --resume` with a number in `checkpoint.npz` changed"
         " (zip intact)", lambda d: fit_resume(
             d, lambda out, cfg: edit_archive(valid_fit_checkpoint(out, cfg))),
         "checksum does not match its contents"),
    Case("fit-checkpoint-other-config", "`fit --resume` with the checkpoint of another config",
         lambda d: fit_resume(d, lambda out, cfg: valid_fit_checkpoint(out, cfg, sha="0" * 64)),
         "the config changed since the checkpoint"),
    Case("md-checkpoint-truncated", "`simulate --resume` with a truncated checkpoint",
         lambda d: md_checkpoint(d, lambda p: (md_archive_other_system(p), truncate(p))),
         "run.chk: not a readable MD checkpoint; the file is truncated or corrupt"),
    Case("md-checkpoint-other-system", "`simulate --resume` with another system's checkpoint",
         lambda d: md_checkpoint(d, md_archive_other_system),
         "this checkpoint belongs to another system"),
    Case("md-checkpoint-old-format", "`simulate --resume` with a checkpoint of the old format",
         lambda d: md_checkpoint(d, old_md_checkpoint),
         "not a MD checkpoint of this chronograd (no header)"),
    Case("qm-manifest-not-json", "QM manifest that is not JSON", qm_manifest_not_json,
         "manifest.json, line 1: not valid JSON"),
    Case("qm-dihedral-out-of-range", "QM record whose dihedral names atom 99", lambda d:
         qm_dataset(d, edit_meta=lambda m: m["records"][0].update(dihedral=[0, 1, 2, 99])),
         "'dihedral' must be 4 distinct atom indices in 0..8"),
    Case("qm-split-wrong-length", "QM record with a split entry missing", lambda d: qm_dataset(
        d, edit_meta=lambda m: m["records"][0].update(
            split=m["records"][0]["split"][:-1])), "'split' must list"),
    Case("qm-positions-wrong-shape", "QM positions with one atom too few", lambda d: qm_dataset(
        d, edit_arrays=lambda a: a.update({"scan-ethanol/positions": a[
            "scan-ethanol/positions"][:, :-1]})), "positions have shape (12, 8, 3)"),
    Case("qm-energy-unit-dimension", "QM energies declared in angstrom", lambda d: qm_dataset(
        d, edit_meta=lambda m: m["units"].update(energy="angstrom")),
         "'units' of 'energy' are 'angstrom' (length); expected energy/amount, e.g. 'hartree'"),
    Case("fit-config-not-toml", "fit config that is not TOML", lambda d: (
        (d / "fit.toml").write_text("[forcefield\nfile=1") and ["fit", "fit.toml"]),
         "fit.toml: not valid TOML"),
    Case("fit-config-prior-dimension", "fit config prior width for Bonds.k in kcal/mol",
         lambda d: ["fit", fit_config(d, extra='[priors]\n"Bonds.k" = "1.0 *'
                                             ' kilocalorie_per_mole"\n')],
         "[priors] Bonds.k: quantity '1.0 * kilocalorie_per_mole' has dimension energy/amount,"
         " expected energy/(amount*length^2)"),
    Case("fit-liquid-experiment-no-units", "liquid fit target with `hvap = 44.0` (no units,"
         " no reference)", lambda d: ["fit", liquid_config(d, "hvap = 44.0")],
         "[[targets]] #1 hvap: an experimental value needs its units and a reference; write"
         " hvap = {value = \"43.98 * kJ/mol\", reference = \"<where the number comes from>\"}"),
    Case("fit-liquid-experiment-no-reference", "liquid fit target with a density but no"
         " reference", lambda d: ["fit", liquid_config(
             d, 'density = {value = "0.997 * g/mL"}')],
         "[[targets]] #1 density: no reference for the experimental value"),
    Case("fit-stop-after-zero", "`fit --stop-after 0`", lambda d: [
        "fit", fit_config(d), "--stop-after", "0"], "--stop-after must be at least 1"),
    # output paths
    Case("simulate-output-folder-missing", "`simulate -o missing/run.dcd`", lambda d: [
        *simulate_ethanol()[:-2], "-o", "missing/run.dcd"],
         "missing/run.dcd: the folder missing for the trajectory does not exist"),
    Case("parameterize-output-folder-missing", "`parameterize -o missing/s.json`", lambda d: [
        "parameterize", "--smiles", "CCO", "--ff", SAGE, "-o", "missing/s.json"],
         "the folder missing for the system JSON does not exist"),
    Case("energy-forces-folder-missing", "`energy --forces missing/f.npy`", lambda d: [
        *water_files(d), "--forces", "missing/f.npy"],
         "the folder missing for the forces does not exist"),
    Case("energy-forces-not-npy", "`energy --forces forces.txt`", lambda d: [
        *water_files(d), "--forces", "forces.txt"], "the forces file must end in .npy"),
    # physically impossible or inconsistent options
    Case("temperature-negative", "`simulate --temperature -5K`", lambda d: simulate_ethanol(
        "--temperature", "-5K"), "--temperature must be >= 0 K, got '-5K'"),
    Case("timestep-zero", "`simulate --timestep 0fs`", lambda d: simulate_ethanol(
        "--timestep", "0fs"), "--timestep must be positive"),
    Case("timestep-wrong-unit", "`simulate --timestep 2K`", lambda d: simulate_ethanol(
        "--timestep", "2K"), "time '2K' has dimension temperature, expected time"),
    Case("timestep-nan", "`simulate --timestep nanfs`", lambda d: simulate_ethanol(
        "--timestep", "nanfs"), "is not a finite number"),
    Case("pressure-negative", "`simulate --pressure -1bar`", lambda d: simulate_ethanol(
        "--pressure", "-1bar"), "--pressure must be >= 0 bar"),
    Case("friction-negative", "`simulate --friction -1`", lambda d: simulate_ethanol(
        "--friction", "-1"), "--friction must be a finite number >= 0"),
    Case("friction-infinite", "`simulate --friction inf`", lambda d: simulate_ethanol(
        "--friction", "inf"), "--friction must be a finite number >= 0"),
    Case("steps-zero", "`simulate --steps 0`", lambda d: [
        "simulate", "--ff", SAGE, "--smiles", "CCO", "--steps", "0", "-o", "run.dcd"],
         "--steps must be at least 1, got 0"),
    Case("report-every-not-a-divisor", "`simulate --steps 100 --report-every 30` (no PDB"
         " written first)", lambda d: simulate_ethanol("--report-every", "30"),
         "--steps (100) must be a multiple of --report-every (30)"),
    Case("seed-negative", "`simulate --seed -1`", lambda d: simulate_ethanol("--seed", "-1"),
         "--seed must be in 0 .. 2**32 - 1"),
    Case("pme-grid-unknown", "`simulate --pme-grid fast`", lambda d: simulate_ethanol(
        "--pme-grid", "fast"), "--pme-grid must be one of fft, exact"),
    Case("density-zero", "`simulate --liquid 10 --density 0`", lambda d: simulate_ethanol(
        "--liquid", "10", "--density", "0"), "--density must be positive"),
    Case("pressure-without-box", "`simulate --pressure 1bar` in vacuum", lambda d:
         simulate_ethanol("--pressure", "1bar"), "--pressure needs a periodic box"),
    Case("steps-not-a-number", "`simulate --steps ten`", lambda d: [
        "simulate", "--ff", SAGE, "--smiles", "CCO", "--steps", "ten", "-o", "run.dcd"],
         "Invalid value for '--steps'", code=2),
    Case("simulate-molecule-twice", "`simulate --ff FF mol.sdf --smiles CCO`", lambda d: [
        "simulate", "--ff", SAGE, sdf(d), "--smiles", "CCO", "--steps", "10",
        "--report-every", "10", "-o", "run.dcd"], "give the molecule once"),
    Case("simulate-json-with-ff", "`simulate --ff FF system.json`", lambda d: [
        "simulate", "--ff", SAGE, system_json(d), "--steps", "10", "--report-every", "10",
        "-o", "run.dcd"], "with --ff give a molecule (SDF/MOL)"),
    Case("energy-ff-without-molecule", "`energy --ff FF` without a molecule", lambda d: [
        "energy", "--ff", SAGE], "--ff needs a molecule"),
    Case("energy-many-files-forces-not-a-folder",
         "`energy --ff FF a.sdf b.sdf --forces f.npy` (several inputs: a folder)",
         lambda d: ["energy", "--ff", SAGE, sdf(d), sdf(d, name="b.sdf"), "--forces", "f.npy"],
         "with several inputs --forces names an existing folder"),
    Case("energy-many-files-with-grad-params",
         "`energy --ff FF a.sdf b.sdf --grad-params g.csv`",
         lambda d: ["energy", "--ff", SAGE, sdf(d), sdf(d, name="b.sdf"), "--grad-params",
                    "g.csv"], "--grad-params takes one molecule"),
    Case("energy-model-not-a-directory", "`energy --model nothing a.sdf`",
         lambda d: ["energy", "--model", "nothing", sdf(d)], "not a model directory"),
    Case("energy-model-with-charges", "`energy --model default --charges am1bcc a.sdf`",
         lambda d: ["energy", "--model", "default", "--charges", "am1bcc", sdf(d)],
         "--charges does not apply with --model"),
    Case("energy-potential-not-a-potential", "`energy --potential` given a parameter model",
         lambda d: ["energy", "--potential", model_copy(d), sdf(d)],
         "not a learned potential"),
    Case("energy-model-and-potential", "`energy --model default --potential P a.sdf`",
         lambda d: ["energy", "--model", "default", "--potential", model_copy(d), sdf(d)],
         "give --model or --potential, not both"),
    Case("combined-ff-id-clash", "two force fields that use one id for different SMIRKS",
         lambda d: ["energy", "--ff", SAGE + "," + offxml(
             d, sage_text()[sage_text().index("<Bonds"):], sage_text()[sage_text().index(
                 "<Bonds"):sage_text().index("<Bond ")] + '<Bond smirks="[#6:1]-[#8:2]"'
             ' id="b1" length="1.4 * angstrom" k="500 * kilocalorie_per_mole / angstrom ** 2"/>'
             '</Bonds></SMIRNOFF>'),
                    sdf(d)], "parameter id 'b1' in <Bonds> has SMIRKS '[#6:1]-[#8:2]'"),
]


# ---- the docs table ----------------------------------------------------------------------------

def run_case(case: Case, folder: Path):
    """(argv, Result) of one case run in ``folder`` (which must be empty)."""
    from cli_helpers import run_cli

    argv = case.build(folder)
    return argv, run_cli(*argv, cwd=folder)


def normalized(message: str, folder: Path) -> str:
    """The message with the case's temporary folder left out of paths."""
    return message.replace(f"{Path(folder).resolve()}/", "")


def table_row(case: Case, message: str) -> str:
    def cell(text):
        return text.replace("|", "\\|")

    return f"| `{case.id}` | {cell(case.tried)} | {cell(message)} |"


def main() -> None:
    import tempfile

    print("# Bad input: what was tried and the message each gets\n")
    print("Generated by `python tests/bad_input_corpus.py > docs/bad-input.md` from the corpus"
          " that\n`tests/test_bad_input.py` runs (one test per row; each checks that its row here"
          " still\nshows the message). Every case exits with code 1 (2 for a usage error),"
          " prints exactly\nthis one line after `error: `, no traceback, and leaves no new file"
          " behind. `--debug`\nadds the traceback.\n")
    print("| case | input | message |")
    print("|---|---|---|")
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            _, result = run_case(case, Path(tmp))
            print(table_row(case, normalized(result.one_line_error(), Path(tmp))))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
