"""NAGL charges in JAX against openff-nagl itself, the model file's safety checks, and
charges differentiable with respect to the network's weights."""

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chronograd.errors import InputError
from chronograd.forcefield import ForceField
from chronograd.ml.nagl import load_nagl_model
from chronograd.ml.resonance import average_formal_charges
from chronograd.ml.torch_archive import read_torch_archive
from chronograd.topology import Molecule

ROOT = Path(__file__).parent.parent
# data/nagl/make_nagl_reference.py: openff-nagl 0.5.5 (PyTorch) through the OpenFF toolkit
REFERENCE = json.loads((ROOT / "data/nagl/nagl_reference.json").read_text())
MODEL, HASH = REFERENCE["model_file"], REFERENCE["model_file_hash"]


@pytest.fixture(scope="module")
def model():
    return load_nagl_model(MODEL, HASH)


def reference_molecules():
    return [(r, Molecule.from_mapped_smiles(r["mapped_smiles"], name=r["name"]))
            for r in REFERENCE["molecules"]]


def test_charges_equal_openff_nagl(model):
    cases = reference_molecules()
    assert len(cases) >= 100
    assert sum(r["in_lookup_table"] for r, _ in cases) >= 5  # both paths are exercised
    worst, worst_feature = 0.0, 0.0
    for record, mol in cases:
        feature = average_formal_charges(mol.rdmol)
        worst_feature = max(worst_feature, float(np.abs(
            feature - record["average_formal_charge"]).max()))
        q = model.charges(mol)
        err = float(np.abs(q - record["charges"]).max())
        worst = max(worst, err)
        assert err <= 1e-5, (record["name"], err)
        assert abs(q.sum() - mol.total_charge) < 1e-9
    assert worst_feature < 1e-12
    print(f"{len(cases)} molecules: worst charge difference {worst:.1e} e")


def test_network_without_lookup_equals_openff_nagl(model):
    """The GNN path alone, also for molecules the lookup table would answer."""
    for record, mol in reference_molecules()[::3]:
        q = model.network_charges(model.graph(mol))
        assert np.abs(q - record["gnn_charges"]).max() <= 1e-5, record["name"]


def test_openff_230_assigns_nagl_charges(model):
    ff = ForceField("openff-2.3.0.offxml")
    record, mol = next((r, m) for r, m in reference_molecules() if not r["in_lookup_table"]
                       and Molecule.from_mapped_smiles(r["mapped_smiles"]).n_atoms > 10)
    charges = np.asarray(ff.create_system(mol).slots()["Nonbonded"]["charge"])
    np.testing.assert_allclose(charges, model.charges(mol), atol=1e-12)
    np.testing.assert_allclose(charges, record["charges"], atol=1e-5)


def test_charge_gradient_wrt_weights_equals_finite_differences(model):
    mol = Molecule.from_smiles("OC(=O)c1ccc(N)cc1", conformer=False)
    graph = jax.tree.map(jnp.asarray, model.graph(mol))
    weights = np.random.default_rng(0).normal(size=mol.n_atoms)
    charge_fn = model.charge_fn()

    def loss(network):
        return jnp.sum(charge_fn(network, graph) * weights) + \
            jnp.sum(charge_fn(network, graph) ** 2)

    grads = eqx.filter_grad(loss)(model.network)
    leaves = [("readout 0", lambda m: m.readout.layers[0].weight),
              ("readout 1", lambda m: m.readout.layers[1].bias),
              ("conv 0 self", lambda m: m.convolution.layers[0].fc_self.weight),
              ("conv 3 neigh", lambda m: m.convolution.layers[3].fc_neigh.weight),
              ("conv 5 bias", lambda m: m.convolution.layers[5].fc_self.bias)]
    checked = 0
    for name, where in leaves:
        # the weight of this layer with the largest gradient (many ReLU units are inactive
        # for one small molecule, so a fixed index would often test a zero)
        g_all = np.asarray(where(grads))
        index = np.unravel_index(np.argmax(np.abs(g_all)), g_all.shape)
        g = float(g_all[index])
        h = 1e-5

        def shifted(d, where=where, index=index):  # noqa: B023
            return eqx.tree_at(where, model.network, where(model.network).at[index].add(d))

        fd = (float(loss(shifted(h))) - float(loss(shifted(-h)))) / (2 * h)
        assert abs(g - fd) <= 1e-6 * max(1.0, abs(fd)), (name, g, fd)
        checked += abs(g) > 1e-8
    assert checked == len(leaves)


def test_unsupported_element_and_forbidden_pattern_are_named(model):
    boronic = Molecule.from_smiles("OB(O)c1ccccc1", name="phenylboronic acid",
                                   conformer=False)
    with pytest.raises(InputError, match=r"atom index 1 is B.*supported elements: H, C, N"):
        model.charges(boronic)
    hydrogen = Molecule.from_smiles("[H][H]", name="dihydrogen", conformer=False)
    with pytest.raises(InputError, match=r"dihydrogen: atoms \[0, 1\] match '\[#1:1\]-\[#1:2\]',"
                       " a pattern outside the NAGL model"):
        model.charges(hydrogen)


def test_hash_mismatch_and_corrupt_files_are_refused(model, tmp_path):
    copy = tmp_path / MODEL
    shutil.copy(model.path, copy)
    with pytest.raises(InputError, match="does not match model_file_hash"):
        load_nagl_model(str(copy), "0" * 64)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(copy.read_bytes()[: 100_000])
    with pytest.raises(InputError, match="cannot read model weights"):
        load_nagl_model(str(broken))


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Payload.marker}",))


def test_pickled_code_is_never_run(tmp_path):
    _Payload.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"state_dict": _Payload()}, protocol=2))
    with pytest.raises(InputError, match="posix.system is not an allowed class|os.system"):
        read_torch_archive(path)
    assert not _Payload.marker.exists()
    with pytest.raises(InputError):
        load_nagl_model(str(path))
    assert not _Payload.marker.exists()


def test_nagl_section_needs_a_model_file_and_a_known_version(tmp_path):
    import importlib.resources

    source = (importlib.resources.files("openforcefields") / "offxml/openff-2.3.0.offxml")
    xml = source.read_text()
    bad_version = tmp_path / "v.offxml"
    bad_version.write_text(xml.replace('version="0.3"></NAGLCharges>',
                                       'version="0.9"></NAGLCharges>'))
    with pytest.raises(InputError, match=r"NAGLCharges> version='0.9' is not supported"):
        ForceField(str(bad_version))
    no_file = tmp_path / "nofile.offxml"
    no_file.write_text(xml.replace('model_file="openff-gnn-am1bcc-1.0.0.pt"', ""))
    with pytest.raises(InputError, match="needs a model_file"):
        ForceField(str(no_file))
    missing = tmp_path / "missing.offxml"
    missing.write_text(xml.replace("openff-gnn-am1bcc-1.0.0.pt", "openff-gnn-nothing.pt"))
    with pytest.raises(InputError, match="'openff-gnn-nothing.pt' not found"):
        ForceField(str(missing)).create_system(Molecule.from_smiles("CCO"))


def test_cli_uses_openff_230_and_refuses_a_mismatched_model(tmp_path):
    import importlib.resources
    import subprocess
    import sys

    cli = [sys.executable, "-m", "chronograd.cli.main"]
    ok = subprocess.run([*cli, "parameterize", "--smiles", "CC(=O)[O-]", "--ff",
                         "openff-2.3.0.offxml", "-o", "acetate.json"], capture_output=True,
                        text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    xml = (importlib.resources.files("openforcefields") / "offxml/openff-2.3.0.offxml") \
        .read_text().replace(HASH, "ab" * 32)
    (tmp_path / "wrong-hash.offxml").write_text(xml)
    bad = subprocess.run([*cli, "parameterize", "--smiles", "CCO", "--ff", "wrong-hash.offxml",
                          "-o", "x.json"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0
    assert "does not match model_file_hash" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()
