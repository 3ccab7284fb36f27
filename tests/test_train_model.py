"""``chronograd fit`` with a [model] table: config errors, model files, a training run whose
reported held-out errors equal an independent evaluation, resume, and ``energy --model``."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from cli_helpers import run_cli

from chronograd.errors import InputError
from chronograd.fit.data import load_qm_dataset
from chronograd.forcefield import ForceField
from chronograd.ml.learned_system import LearnedModel, learned_system
from chronograd.ml.model_files import load_model, save_model
from chronograd.ml.predictor import PredictorConfig
from chronograd.ml.train_config import load_train_config
from chronograd.ml.train_runner import run_training

QM = Path(__file__).parent.parent / "data/qm"
FF = "openff_unconstrained-2.3.0.offxml"
CONFIG = f"""
[model]
forcefield = "{FF}"
name = "tiny"
hidden = 12
layers = 2
readout = 12

[[stages]]
name = "qm"
dataset = "{QM}"
records = ["conf-ethanol", "conf-ethylamine", "conf-1-propanol"]
energy_weight = 1.0
force_weight = 1.0
epochs = 4
learning_rate = 1e-3
n_buckets = 1

[output]
directory = "out"
checkpoint_every = 2
"""


def write(folder: Path, text: str) -> Path:
    path = folder / "train.toml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_training_reports_what_an_independent_evaluation_measures(tmp_path):
    summary = run_training(load_train_config(write(tmp_path, CONFIG)), progress=False)
    out = tmp_path / "out"
    for name in ("report.md", "log.jsonl", "summary.json", "learning_curve.png",
                 "parity_energy.png", "parity_forces.png", "model/model.json"):
        assert (out / name).is_file(), name
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2, 3, 4]
    # the held-out geometries (split "test" of the records) through plain learned systems
    model, meta = load_model(out / "model")
    assert meta["forcefield"] == FF
    ff = ForceField(FF)
    de, df, n_e, n_f = 0.0, 0.0, 0, 0
    for r in load_qm_dataset(QM, records=["conf-ethanol", "conf-ethylamine",
                                          "conf-1-propanol"]):
        test = r.subset("test")
        system = learned_system(ff, r.molecule, model)
        results = [system.energy_and_forces(x) for x in test.positions]
        e = np.array([a for a, _ in results])
        f = np.stack([b for _, b in results])
        de += float(np.sum(((e - e.mean()) - (test.energy - test.energy.mean())) ** 2))
        df += float(np.sum((f - test.forces) ** 2))
        n_e += len(e)
        n_f += f.size
    reported = summary["test"]["overall"]
    assert reported["energy_rmse"] == pytest.approx(np.sqrt(de / n_e), rel=1e-6)
    assert reported["forces_rmse"] == pytest.approx(np.sqrt(df / n_f), rel=1e-6)


@pytest.mark.slow
def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    text = CONFIG.replace('epochs = 4', 'epochs = 5\nvalidation_fraction = 0.34\npatience = 9')
    run_training(load_train_config(write(tmp_path / "a", text)), progress=False)
    cfg = load_train_config(write(tmp_path / "b", text))
    assert not run_training(cfg, stop_after=3, progress=False)["finished"]
    run_training(cfg, resume=True, progress=False)
    a = np.load(tmp_path / "a/out/model/weights.npz")
    b = np.load(tmp_path / "b/out/model/weights.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("change, message", [
    ('hidden = 12', 'hidden = "wide"', ),
    ('name = "tiny"', 'freeze = ["charges"]\nname = "tiny"'),
    ('name = "tiny"', 'freeze = ["vdw"]\nname = "tiny"'),
    ('epochs = 4', 'epochs = 0'),
    ('dataset = ', 'molecules = "x.smi"\ndataset = '),
], ids=["type", "trains-frozen", "unknown-kind", "epochs", "two-sources"])
def test_config_errors_name_the_key_and_line(tmp_path, change, message):
    text = CONFIG.replace(change, message)
    if "charges" in message:
        text = text.replace("force_weight = 1.0", "force_weight = 1.0\ncharge_weight = 1.0")
    path = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_train_config(path)
    assert str(err.value).startswith(f"{path}, line ")
    expected = {"type": "expected int", "trains-frozen": "trains charges, which [model]"
                " freeze holds fixed", "unknown-kind": "'vdw' is not a term kind",
                "epochs": "must be at least 1", "two-sources": "give either 'molecules'"}
    assert any(v in str(err.value) for v in expected.values())


def test_model_files_round_trip_and_refuse_damage(tmp_path):
    model = LearnedModel.initialize(PredictorConfig(hidden=8, layers=1, readout=8), name="m")
    save_model(model, tmp_path / "m", forcefield=FF)
    loaded, meta = load_model(tmp_path / "m")
    for a, b in zip(jax.tree.leaves(model.weights), jax.tree.leaves(loaded.weights),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "m", bad)
    raw = bytearray((bad / "weights.npz").read_bytes())
    raw[-100] ^= 0xFF
    (bad / "weights.npz").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="does not match .* recorded in model.json"):
        load_model(bad)
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "m", other)
    meta = json.loads((other / "model.json").read_text())
    meta["config"]["hidden"] = 9
    (other / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="written for another architecture|shape"):
        load_model(other)
    with pytest.raises(InputError, match="not a model directory"):
        load_model(tmp_path)
    # a fine-tuning config whose force field differs from the model's
    text = CONFIG.replace('name = "tiny"', f'init = "{tmp_path / "m"}"\nname = "tiny"') \
        .replace(f'forcefield = "{FF}"', 'forcefield = "openff-2.2.1.offxml"')
    with pytest.raises(InputError, match="takes van der Waals parameters from"):
        run_training(load_train_config(write(tmp_path, text)), progress=False)


def test_energy_with_the_default_model_matches_its_system(tmp_path):
    from rdkit import Chem

    from chronograd.topology import Molecule

    mol = Molecule.from_smiles("CC(=O)Nc1ccc(O)cc1", name="paracetamol")
    rd = Chem.Mol(mol.rdmol)
    for i, p in enumerate(mol.positions * 10):
        rd.GetConformer().SetAtomPosition(i, p.tolist())
    Chem.MolToMolFile(rd, str(tmp_path / "p.sdf"))
    res = run_cli("energy", "--model", "default", "p.sdf", "--json", "--forces", "f.npy",
                  cwd=tmp_path)
    assert res.code == 0, res.err
    record = json.loads(res.out)
    model, meta = load_model("default")
    (read,) = Molecule.from_sdf(tmp_path / "p.sdf")  # the file's 4-decimal coordinates
    system = learned_system(ForceField(meta["forcefield"]), read, model)
    e, f = system.energy_and_forces(read.positions)
    assert record["total"] == pytest.approx(e, rel=1e-9)
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), f, rtol=1e-7, atol=1e-7)
    bad = run_cli("energy", "--model", "default", "--ff", "openff-2.2.1.offxml", "p.sdf",
                  cwd=tmp_path)
    assert "takes van der Waals parameters from" in bad.one_line_error()


def test_qm_record_in_another_atom_order_is_named_and_nothing_is_written(tmp_path):
    data = tmp_path / "qm"
    data.mkdir()
    shutil.copy(QM / "manifest.json", data / "manifest.json")
    arrays = dict(np.load(QM / "qm_data.npz"))
    x = arrays["conf-ethanol/positions"]
    x[:, [3, 8]] = x[:, [8, 3]]  # a methyl H and the hydroxyl H trade places
    np.savez(data / "qm_data.npz", **arrays)
    write(tmp_path, CONFIG.replace(str(QM), str(data)))
    res = run_cli("fit", "train.toml", "--quiet", cwd=tmp_path)
    assert res.code == 1
    line = res.one_line_error()
    assert "record 'conf-ethanol' geometry 0: atoms" in line and "are bonded" in line
    assert not (tmp_path / "out" / "model").exists()
