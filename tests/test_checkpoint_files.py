"""Checkpoint files are data: every optimizer's state and a liquid target's sample survive the
round trip exactly; a state type that the optimizer does not have is refused; the MD
checkpoint belongs to its integrator."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from chronograd.errors import InputError
from chronograd.fit.checkpoint import (
    open_fit_checkpoint,
    restore_fit_checkpoint,
    write_fit_checkpoint,
)
from chronograd.fit.optimizers import OPTIMIZERS


def _same(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y, equal_nan=True)


def _blob(state):
    sample = {"frames": np.random.default_rng(0).normal(size=(3, 4, 3)), "boxes": np.eye(3)[None],
              "u_liquid": np.array([1.0, np.inf, -2.0]), "gas_frames": np.zeros((2, 4, 3)),
              "last_liquid": (np.ones((4, 3)), 2 * np.eye(3)), "last_gas": np.zeros((4, 3))}
    return {"iteration": 2, "state": state, "log": [{"iteration": 1, "loss": 2.0},
                                                    {"iteration": 2, "loss": float("nan")}],
            "evaluations": (3, 2, 0), "wall_s": 1.5, "labels": ["Bonds.k[b1]", "Bonds.k[b2]"],
            "target_states": {1: {"sample": sample, "n_simulations": 2}, 3: {"sample": None,
                                                                              "n_simulations": 0}}}


@pytest.mark.parametrize("method", sorted(OPTIMIZERS))
def test_fit_checkpoint_round_trip_is_exact(tmp_path, method):
    opt = OPTIMIZERS[method]()
    state = opt.init(np.array([0.1, -0.2]))
    state["loss"] = 1.25  # what a step leaves behind beside the template's entries
    blob = _blob(state)
    path = tmp_path / "checkpoint.npz"
    write_fit_checkpoint(path, blob, config_sha256="c" * 64)
    back = restore_fit_checkpoint(*open_fit_checkpoint(path, config_sha256="c" * 64,
                                                       config_path="fit.toml"),
                                  path=path, labels=blob["labels"],
                                  state_template=opt.init(np.zeros(2)), iterations=5)
    assert back.keys() == blob.keys() and back["target_states"].keys() == {1, 3}
    _same(back["state"], blob["state"])
    _same(back["target_states"], blob["target_states"])
    assert back["log"][0] == blob["log"][0] and np.isnan(back["log"][1]["loss"])
    assert isinstance(back["target_states"][1]["sample"]["last_liquid"], tuple)


def test_fit_checkpoint_refuses_other_optimizers_and_parameters(tmp_path):
    path = tmp_path / "checkpoint.npz"
    adam = OPTIMIZERS["adam"]()
    blob = _blob(adam.init(np.zeros(2)))
    write_fit_checkpoint(path, blob, config_sha256="c" * 64)
    opened = open_fit_checkpoint(path, config_sha256="c" * 64, config_path="fit.toml")
    lbfgs = OPTIMIZERS["lbfgs"]()
    with pytest.raises(InputError, match="does not belong to this optimizer"):
        restore_fit_checkpoint(*opened, path=path, labels=blob["labels"],
                               state_template=lbfgs.init(np.zeros(2)), iterations=5)
    with pytest.raises(InputError, match="written for other parameters"):
        restore_fit_checkpoint(*opened, path=path, labels=["Bonds.k[b1]"],
                               state_template=adam.init(np.zeros(2)), iterations=5)
    with pytest.raises(InputError, match="does not fit its log"):
        restore_fit_checkpoint(*opened, path=path, labels=blob["labels"],
                               state_template=adam.init(np.zeros(2)), iterations=1)
    # the runner's log starts with the starting force field's entry (iteration 0)
    started = {**blob, "log": [{"iteration": 0, "loss": 3.0}, *blob["log"]]}
    write_fit_checkpoint(path, started, config_sha256="c" * 64)
    restore_fit_checkpoint(*open_fit_checkpoint(path, config_sha256="c" * 64,
                                                config_path="fit.toml"),
                           path=path, labels=blob["labels"],
                           state_template=adam.init(np.zeros(2)), iterations=5)
    gap = {**blob, "log": [{"iteration": 0, "loss": 3.0}, blob["log"][1]]}
    write_fit_checkpoint(path, gap, config_sha256="c" * 64)
    with pytest.raises(InputError, match="does not fit its log"):
        restore_fit_checkpoint(*open_fit_checkpoint(path, config_sha256="c" * 64,
                                                    config_path="fit.toml"),
                               path=path, labels=blob["labels"],
                               state_template=adam.init(np.zeros(2)), iterations=5)
    with pytest.raises(InputError, match="the config changed"):
        open_fit_checkpoint(path, config_sha256="d" * 64, config_path="fit.toml")


def test_md_checkpoint_belongs_to_its_integrator(tmp_path):
    from chronograd.dynamics import langevin, nose_hoover, velocity_verlet
    from chronograd.dynamics.reporters import load_checkpoint, save_checkpoint
    from chronograd.forcefield import ForceField
    from chronograd.topology import Molecule

    water = Molecule.from_smiles("O")
    system = ForceField("openff-2.2.1.offxml").create_system(water)
    integ = nose_hoover(system, timestep=0.001, temperature=300.0)
    state = integ.init(water.positions, key=jax.random.key(4), temperature=300.0)
    save_checkpoint(tmp_path / "c.chk", state, integ)
    back = load_checkpoint(tmp_path / "c.chk", integ)
    _same((back.positions, back.velocities, back.extra, jax.random.key_data(back.key)),
          (state.positions, state.velocities, state.extra, jax.random.key_data(state.key)))
    with pytest.raises(InputError, match="resume with the same integrator"):
        load_checkpoint(tmp_path / "c.chk", langevin(system, timestep=0.001, temperature=300.0))
    other = ForceField("openff-2.2.1.offxml").create_system(Molecule.from_smiles("CO"))
    with pytest.raises(InputError, match="belongs to another system"):
        load_checkpoint(tmp_path / "c.chk", velocity_verlet(other, timestep=0.001))
