"""chronograd as a PyTorch layer: gradcheck of the energy module (positions, force-field θ,
network weights) and of a wrapped trajectory observable; a torch optimizer lowers a loss
through a system; a torch model that outputs parameters receives gradients; bad tensors get
clear errors; tensors cross by DLPack without copies.

Run by tests/test_torch_bridge.py in a process of its own (torch is never loaded into the
suite's workers, which compile and cache hundreds of XLA programs; see that file)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import chronograd as cg  # noqa: E402
from chronograd.errors import InputError  # noqa: E402
from chronograd.ml.potential_models import PotentialConfig  # noqa: E402
from chronograd.ml.potential_term import PotentialModel, potential_system  # noqa: E402
from chronograd.topology import Molecule  # noqa: E402
from chronograd.torch import energy_module, jax_function, to_jax, to_torch  # noqa: E402

FF = "openff_unconstrained-2.2.1.offxml"


@pytest.fixture(scope="module")
def setup():
    ff = cg.ForceField(FF)
    mol = Molecule.from_smiles("CCO", name="ethanol")
    return ff, mol, ff.create_system(mol, charges="gasteiger")


def _conformers(mol, n, seed=0):
    rng = np.random.default_rng(seed)
    return [mol.positions + rng.normal(scale=0.006, size=mol.positions.shape)
            for _ in range(n)]


def test_energy_module_equals_the_system_and_exposes_named_parameters(setup):
    _, mol, system = setup
    module = energy_module(system)
    names = dict(module.named_parameters())
    assert "theta.Bonds.k" in names and "theta.vdW.epsilon" in names
    np.testing.assert_allclose(names["theta.Bonds.k"].detach().numpy(),
                               np.asarray(system.params["Bonds"]["k"]))
    x = torch.tensor(mol.positions, requires_grad=True)
    e = module(x)
    e.backward()
    ref_e, ref_f = system.energy_and_forces(mol.positions)
    assert float(e.detach()) == pytest.approx(ref_e, abs=1e-10)
    np.testing.assert_allclose(-x.grad.numpy(), ref_f, atol=1e-9)
    g = jax.grad(system.energy_fn(), argnums=2)(jnp.asarray(mol.positions), None,
                                                system.params)
    np.testing.assert_allclose(names["theta.Bonds.k"].grad.numpy(), g["Bonds"]["k"],
                               atol=1e-12)


def test_gradcheck_energy_module_positions_and_parameters(setup):
    _, mol, system = setup
    module = energy_module(system)
    x = torch.tensor(mol.positions, requires_grad=True)
    k = module.get_parameter("theta.Bonds.k").detach()
    used = torch.tensor(np.flatnonzero(jax.grad(system.energy_fn(), argnums=2)(
        jnp.asarray(mol.positions), None, system.params)["Bonds"]["k"]))
    k_used = k[used].clone().requires_grad_(True)

    def f(x, k_used):
        full = k.index_put((used,), k_used)
        return module(x, params={"Bonds": {"k": full}})

    assert torch.autograd.gradcheck(f, (x, k_used), eps=1e-6, atol=1e-5, rtol=1e-5)


def test_gradcheck_learned_potential_weights():
    mol = Molecule.from_smiles("CO", name="methanol")
    model = PotentialModel.initialize(PotentialConfig(hidden=6, layers=2, n_rbf=5, seed=1))
    system = potential_system(mol, model)
    module = energy_module(system)
    names = [n for n, _ in module.named_parameters()]
    assert "theta.potential.readout_shift" in names
    w = module.get_parameter("theta.potential.interactions_1_filter_in_weight")
    w0 = w.detach().clone().requires_grad_(True)
    x = torch.tensor(mol.positions, requires_grad=True)
    f = lambda x, w: module(x, params={"potential": {  # noqa: E731
        "interactions_1_filter_in_weight": w}})
    assert torch.autograd.gradcheck(f, (x, w0), eps=1e-6, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_gradcheck_wrapped_trajectory_observable(setup):
    """The mean potential energy of 30 velocity-Verlet steps as a function of two bond
    parameters, wrapped as a torch.autograd.Function."""
    from jax.flatten_util import ravel_pytree

    import chronograd.dynamics as dyn

    _, mol, system = setup
    integ = dyn.velocity_verlet(system, timestep=0.0005)
    s0 = integ.init(mol.positions, key=jax.random.key(0), temperature=300.0)
    flat, unravel = ravel_pytree(system.params)
    grads = ravel_pytree(jax.grad(system.energy_fn(), argnums=2)(
        jnp.asarray(mol.positions), None, system.params))[0]
    rows = jnp.asarray(np.flatnonzero(np.asarray(grads))[:2])

    def mean_energy(delta):
        p = unravel(flat.at[rows].add(delta))

        def body(s, _):
            s = integ.step(s, p)
            return s, s.potential_energy

        return jnp.mean(jax.lax.scan(body, s0, None, length=30)[1])

    observable = jax_function(mean_energy)
    delta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    value = observable(delta)
    assert float(value.detach()) == pytest.approx(float(mean_energy(jnp.zeros(2))), abs=1e-12)
    assert torch.autograd.gradcheck(observable, (delta,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_a_torch_optimizer_lowers_a_loss_through_the_system(setup):
    _, mol, system = setup
    truth = energy_module(system)
    with torch.no_grad():
        truth.get_parameter("theta.Bonds.k").mul_(1.15)
    confs = [torch.tensor(x) for x in _conformers(mol, 4)]
    targets = torch.stack([truth(x) for x in confs]).detach()
    module = energy_module(system)
    for p in module.parameters():
        p.requires_grad_(False)
    k = module.get_parameter("theta.Bonds.k").requires_grad_(True)
    opt = torch.optim.Adam([k], lr=2000.0)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        pred = torch.stack([module(x) for x in confs])
        loss = torch.mean(((pred - pred.mean()) - (targets - targets.mean())) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


def test_a_torch_model_that_outputs_parameters_is_trained_through_the_system(setup):
    """espaloma-style: a torch network maps bond features to (k, length) of every bond of an
    imported system; its weights receive dU/dparameters x dparameters/dweights."""
    _, mol, system = setup
    imported = cg.from_openmm(cg.to_openmm(system, system.params))
    bonds = next(t for t in imported.terms if t.name == "harmonic_bond").atoms
    z = np.array([a.GetAtomicNum() for a in mol.rdmol.GetAtoms()])
    elements = [1, 6, 8]
    feats = np.zeros((len(bonds), 6))
    for r, (i, j) in enumerate(bonds):
        feats[r, elements.index(z[i])] += 1
        feats[r, 3 + elements.index(z[j])] += 1
    feats = torch.tensor(feats)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 2)).double()
    module = energy_module(imported)
    confs = [torch.tensor(x) for x in _conformers(mol, 5, seed=1)]
    target = torch.stack([module(x) for x in confs]).detach()

    def params():
        out = net(feats)
        return {"harmonic_bond": {"k": 3e5 * torch.exp(0.3 * out[:, 0]),
                                  "length": 0.12 * torch.exp(0.1 * out[:, 1])}}

    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        p = params()
        pred = torch.stack([module(x, params=p) for x in confs])
        loss = torch.mean((pred - target) ** 2)
        loss.backward()
        assert all(q.grad is not None and torch.isfinite(q.grad).all()
                   for q in net.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_bad_tensors_are_refused_with_what_was_expected(setup):
    _, mol, system = setup
    module = energy_module(system)
    x = torch.tensor(mol.positions)
    with pytest.raises(InputError, match=r"shape \(9, 2\) \(expected \(9, 3\)\)"):
        module(x[:, :2])
    with pytest.raises(InputError, match="expected torch.float64"):
        module(x.float())
    with pytest.raises(InputError, match="device meta"):
        module(x.to("meta"))
    with pytest.raises(InputError, match="not periodic"):
        module(x, box=torch.eye(3, dtype=torch.float64))
    with pytest.raises(InputError, match="must be a torch.Tensor"):
        module(mol.positions)


def test_tensors_cross_without_copies():
    t = torch.arange(12, dtype=torch.float64).reshape(4, 3)
    a = to_jax(t)
    back = to_torch(a)
    assert back.data_ptr() == t.data_ptr()
    np.testing.assert_array_equal(np.asarray(a), t.numpy())


def test_import_chronograd_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, chronograd; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
