"""Training through the system: batched loss equals per-molecule loss, the loss gradient with
respect to model weights equals finite differences, and a few optax steps reduce it."""

from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax
import pytest

from chronograd.fit.data import load_qm_dataset
from chronograd.forcefield import ForceField
from chronograd.ml.learned_system import LearnedModel, learned_system
from chronograd.ml.predictor import PredictorConfig
from chronograd.ml.training import Example, LossWeights, TrainingSet, label_targets, loss_fn

QM = Path(__file__).parent.parent / "data/qm"
FF = "openff_unconstrained-2.3.0.offxml"
TINY = PredictorConfig(hidden=16, layers=2, readout=16, seed=1)


@pytest.fixture(scope="module")
def setup():
    ff = ForceField(FF)
    model = LearnedModel.initialize(TINY, name="tiny")
    records = load_qm_dataset(QM, records=["conf-ethanol", "conf-acetic-acid",
                                           "conf-ethylamine"])
    examples = []
    for k, r in enumerate(records):
        n_conf = 3 + k  # unequal conformer counts exercise the padding
        mol = r.molecule
        labels = label_targets(ff.create_system(mol, charges="gasteiger"),
                               learned_system(ff, mol, model), mol)
        examples.append(Example(r.id, mol, r.positions[:n_conf], r.energy[:n_conf],
                                r.forces[:n_conf], charges=np.linspace(-0.3, 0.3, mol.n_atoms)
                                - 0.0, labels=labels))
    return ff, model, examples


@pytest.mark.slow
def test_batched_sums_equal_per_molecule_sums(setup):
    ff, model, examples = setup
    examples = examples[1:]  # two molecules with 4 and 5 conformers: padding either way
    together = TrainingSet(ff, model, examples, n_buckets=1)
    sums = together.sums(together.params)
    alone = [TrainingSet(ff, model, [ex]) for ex in examples]
    for key, value in sums.items():
        expected = sum(float(t.sums(t.params)[key]) for t in alone)
        assert abs(float(value) - expected) <= 1e-9 * max(1.0, abs(expected)), key
    assert together.counts["energy"] == 4 + 5
    # and so are their gradients with respect to the model weights (one reverse pass over the
    # padded batch = the sum of the per-molecule gradients)
    def total(t):
        return lambda w: sum(t.sums({**t.params, "model": w}).values())

    g_batch = jax.grad(total(together))(together.params["model"])
    g_alone = [jax.grad(total(t))(t.params["model"]) for t in alone]
    for leaf, *parts in zip(jax.tree.leaves(g_batch), *map(jax.tree.leaves, g_alone),
                            strict=True):
        expected = sum(np.asarray(p) for p in parts)
        np.testing.assert_allclose(np.asarray(leaf), expected, rtol=1e-8,
                                   atol=1e-9 * np.abs(expected).max())


def test_loss_gradient_wrt_weights_equals_finite_differences(setup):
    ff, model, examples = setup
    training = TrainingSet(ff, model, examples)
    loss = jax.jit(loss_fn(training, LossWeights(labels=0.1)))
    params = training.params
    grads = jax.grad(loss)(params)
    picks = [lambda p: p["model"].embed.layers[0].fc_neigh.weight,
             lambda p: p["model"].bond_head.layers[0].weight,
             lambda p: p["model"].proper_head.layers[1].bias,
             lambda p: p["model"].charge_head.layers[0].bias]
    for where in picks:
        g_all = np.asarray(where(grads))
        index = np.unravel_index(np.argmax(np.abs(g_all)), g_all.shape)
        h = 1e-6

        def at(d, where=where, index=index):  # noqa: B023
            return float(loss(eqx.tree_at(where, params, where(params).at[index].add(d))))

        fd = (at(h) - at(-h)) / (2 * h)
        assert abs(g_all[index] - fd) <= 1e-5 * max(1.0, abs(fd)), (g_all[index], fd)
        assert abs(fd) > 0


def test_adam_steps_reduce_the_loss(setup):
    ff, model, examples = setup
    training = TrainingSet(ff, model, examples)
    loss = loss_fn(training, LossWeights(labels=1.0))
    opt = optax.adam(3e-3)
    params = training.params
    state = opt.init(params["model"])

    @jax.jit
    def step(w, state):
        value, g = jax.value_and_grad(lambda w: loss({**params, "model": w}))(w)
        updates, state = opt.update(g, state, w)
        return optax.apply_updates(w, updates), state, value

    w = params["model"]
    first = None
    for _ in range(15):
        w, state, value = step(w, state)
        first = float(value) if first is None else first
    assert float(loss({**params, "model": w})) < 0.7 * first
