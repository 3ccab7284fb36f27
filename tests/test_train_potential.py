"""Force matching through ``chronograd fit`` (a [model] table with kind = "potential"):
a training run whose reported held-out errors equal an independent evaluation of the saved
potential, stop/resume, config errors naming key and line, and weights of another
architecture refused by name."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from chronograd.errors import InputError
from chronograd.fit.data import load_qm_dataset
from chronograd.ml.model_files import load_model, save_model
from chronograd.ml.potential_models import PotentialConfig
from chronograd.ml.potential_term import PotentialModel, potential_system
from chronograd.ml.train_config import load_train_config
from chronograd.ml.train_runner import run_training

QM = Path(__file__).parent.parent / "data/qm"
RECORDS = ["conf-ethanol", "conf-ethylamine", "conf-1-propanol"]
CONFIG = f"""
[model]
kind = "potential"
architecture = "painn"
name = "tiny-painn"
cutoff = 0.45
hidden = 8
layers = 2
n_rbf = 6

[[stages]]
name = "force-matching"
dataset = "{QM}"
records = {json.dumps(RECORDS)}
energy_weight = 1.0
force_weight = 1.0
epochs = 6
learning_rate = 3e-2
n_buckets = 1

[output]
directory = "out"
checkpoint_every = 2
"""


def write(folder: Path, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "train.toml"
    path.write_text(text)
    return path


def test_force_matching_lowers_the_loss_and_reports_what_an_evaluation_measures(tmp_path):
    summary = run_training(load_train_config(write(tmp_path, CONFIG)), progress=False)
    out = tmp_path / "out"
    for name in ("report.md", "learning_curve.png", "parity_forces.png", "model/model.json"):
        assert (out / name).is_file(), name
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2, 3, 4, 5, 6]
    assert log[-1]["train_loss"] < 0.995 * log[0]["train_loss"]  # from scratch: slow start
    model, meta = load_model(out / "model", kind="potential")
    assert meta["kind"] == "potential" and meta["forcefield"] is None
    assert model.config.architecture == "painn"
    de, df, n_e, n_f = 0.0, 0.0, 0, 0
    for r in load_qm_dataset(QM, records=RECORDS):
        test = r.subset("test")
        system = potential_system(r.molecule, model)
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
    text = CONFIG.replace("epochs = 6", "epochs = 5\nvalidation_fraction = 0.34")
    run_training(load_train_config(write(tmp_path / "a", text)), progress=False)
    cfg = load_train_config(write(tmp_path / "b", text))
    assert not run_training(cfg, stop_after=3, progress=False)["finished"]
    run_training(cfg, resume=True, progress=False)
    a = np.load(tmp_path / "a/out/model/weights.npz")
    b = np.load(tmp_path / "b/out/model/weights.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("change, message", [
    ('architecture = "painn"', 'architecture = "mace"'),
    ('dataset = ', 'molecules = "x.smi"\ndataset = '),
    ('force_weight = 1.0', 'force_weight = 1.0\ncharge_weight = 1.0'),
    ('name = "tiny-painn"', 'name = "tiny-painn"\nreadout = 8'),
    ('kind = "potential"', 'kind = "potentials"'),
    ('name = "tiny-painn"', 'name = "tiny-painn"\ntrain_forcefield = true'),
], ids=["architecture", "labels", "charges", "predictor-key", "kind", "no-forcefield"])
def test_config_errors_name_the_key_and_line(tmp_path, change, message):
    path = write(tmp_path, CONFIG.replace(change, message))
    with pytest.raises(InputError) as err:
        load_train_config(path)
    text = str(err.value)
    assert text.startswith(f"{path}")
    expected = ["'mace' is not one of", "a potential trains on QM data",
                "no charges or parameter labels", "applies to parameter models",
                "is not 'parameters'", "needs a 'forcefield'"]
    assert any(v in text for v in expected), text


def test_weights_of_another_architecture_are_refused_by_name(tmp_path):
    model = PotentialModel.initialize(PotentialConfig(hidden=8, layers=2, n_rbf=6))
    save_model(model, tmp_path / "m", forcefield=None)
    loaded, _ = load_model(tmp_path / "m")
    for a, b in zip(jax.tree.leaves(model.weights), jax.tree.leaves(loaded.weights),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "m", other)
    meta = json.loads((other / "model.json").read_text())
    meta["config"]["architecture"] = "painn"
    (other / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="not those of the painn its configuration describes"):
        load_model(other)
    with pytest.raises(InputError, match="learned potential"):
        load_model(tmp_path / "m", kind="parameters")
    # a checkpoint written for one architecture, resumed by a config for another
    text = CONFIG.replace("epochs = 6", "epochs = 2")
    run_training(load_train_config(write(tmp_path / "c", text)), progress=False)
    (tmp_path / "c/train.toml").write_text(text.replace('"painn"', '"schnet"'))
    with pytest.raises(InputError, match="config changed|written for a painn"):
        run_training(load_train_config(tmp_path / "c/train.toml"), resume=True,
                     progress=False)


def test_delta_loss_gradient_reaches_theta_and_weights_jointly():
    """U = U_Sage(θ) + U_NN(w): one reverse pass of the force-matching loss gives dL/dθ and
    dL/dw, each equal to central differences (so θ and w can train jointly or apart)."""
    import equinox as eqx

    from chronograd.forcefield import ForceField
    from chronograd.ml.training import Example, LossWeights, TrainingSet, loss_fn

    ff = ForceField("openff_unconstrained-2.2.1.offxml")
    model = PotentialModel.initialize(PotentialConfig(hidden=6, layers=1, n_rbf=5, seed=4,
                                                      energy_scale=2.0))
    examples = [Example(r.id, r.molecule, r.positions[:3], r.energy[:3], r.forces[:3])
                for r in load_qm_dataset(QM, records=RECORDS[:2])]
    tset = TrainingSet(ff, model, examples, n_buckets=1)
    loss = jax.jit(loss_fn(tset, LossWeights()))
    params = tset.params
    grads = jax.grad(loss)(params)
    row = int(np.argmax(np.abs(np.asarray(grads["base"]["Bonds"]["k"]))))
    h = 1e-3 * float(params["base"]["Bonds"]["k"][row])

    def with_k(d):
        k = params["base"]["Bonds"]["k"].at[row].add(d)
        return loss({**params, "base": {**params["base"], "Bonds": {
            **params["base"]["Bonds"], "k": k}}})

    fd = (with_k(h) - with_k(-h)) / (2 * h)
    assert float(grads["base"]["Bonds"]["k"][row]) == pytest.approx(float(fd), rel=1e-5)

    def get(w):
        return w.interactions[0].filter_in.weight

    def with_w(d):
        w = eqx.tree_at(get, params["potential"], get(params["potential"]).at[1, 2].add(d))
        return loss({**params, "potential": w})

    fd = (with_w(1e-5) - with_w(-1e-5)) / 2e-5
    assert float(get(grads["potential"])[1, 2]) == pytest.approx(float(fd), rel=1e-5)
    assert abs(float(fd)) > 0
