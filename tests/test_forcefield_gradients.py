"""dU/dtheta equals finite differences for every kind of force-field parameter, and the slot
map's J v / J^T w agree with autodiff; .offxml round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from chronograd.forcefield import ForceField
from chronograd.forcefield.charges import gasteiger_charges
from chronograd.topology import Molecule


@pytest.fixture(scope="module")
def case():
    ff = ForceField("openff_unconstrained-2.2.1.offxml")
    # acetanilide has bonds, angles, idivf-scaled multi-term propers and impropers; the ions
    # and water take library charges; rmin_half and sigma both appear (TIP3P uses sigma).
    mols = [Molecule.from_smiles("CC(=O)Nc1ccccc1"), Molecule.from_smiles("O"),
            Molecule.from_smiles("[Na+]")]
    for m in mols:
        m.partial_charges = gasteiger_charges(m)
    offsets = [np.zeros(3), np.array([0.7, 0.0, 0.0]), np.array([0.0, 0.7, 0.2])]
    pos = np.concatenate([m.positions - m.positions.mean(0) + o for m, o in
                          zip(mols, offsets, strict=True)])
    system = ff.create_system(mols, charges="from-file")
    return ff, system, jnp.asarray(pos)


KINDS = [
    ("Bonds", "k"), ("Bonds", "length"), ("Angles", "k"), ("Angles", "angle"),
    ("ProperTorsions", "k"), ("ProperTorsions", "phase"), ("ImproperTorsions", "k"),
    ("ImproperTorsions", "phase"), ("vdW", "epsilon"), ("vdW", "rmin_half"), ("vdW", "sigma"),
    ("LibraryCharges", "charge"),
]


@pytest.mark.parametrize("handler, attr", KINDS)
def test_gradient_equals_finite_difference(case, handler, attr):
    ff, system, x = case
    U = jax.jit(system.energy_fn())
    grad = jax.jit(jax.grad(system.energy_fn(), argnums=2))(x, None, ff.params)
    g = np.asarray(grad[handler][attr])
    used = np.flatnonzero(g != 0)
    assert used.size > 0, f"no {handler}.{attr} parameter is used"
    for row in used[:4]:
        base = ff.params[handler][attr]
        h = 1e-6 * max(1.0, abs(float(base[row])))

        def at(delta, row=row, base=base):
            p = jax.tree_util.tree_map(lambda v: v, ff.params)
            p[handler] = dict(p[handler])
            p[handler][attr] = base.at[row].add(delta)
            return float(U(x, None, p))

        fd = (at(h) - at(-h)) / (2 * h)
        assert g[row] == pytest.approx(fd, rel=1e-5, abs=1e-6), (handler, attr, row)


def test_slot_map_products_agree_with_autodiff(case):
    ff, system, _ = case
    source = system.source
    flat, unravel = ravel_pytree(ff.params)
    v = jax.random.normal(jax.random.PRNGKey(0), flat.shape)
    for attrs in source.maps.values():
        for m in attrs.values():
            f = lambda t, m=m: m.apply(t)  # noqa: E731
            _, jv = jax.jvp(f, (flat,), (v,))
            np.testing.assert_allclose(np.asarray(m.jvp(v)), np.asarray(jv), rtol=1e-12,
                                       atol=1e-12)
            w = jax.random.normal(jax.random.PRNGKey(1), (m.n_slots,))
            (vjp,) = jax.vjp(f, flat)[1](w)
            np.testing.assert_allclose(np.asarray(m.vjp(w, flat.size)), np.asarray(vjp),
                                       rtol=1e-12, atol=1e-12)


def test_offxml_round_trip_and_changed_theta(case, tmp_path):
    ff, system, x = case
    path = tmp_path / "same.offxml"
    ff.to_offxml(path)
    again = ForceField(path)
    for a, b in zip(jax.tree_util.tree_leaves(ff.params), jax.tree_util.tree_leaves(again.params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # change every torsion barrier and an epsilon; the written file reproduces the energy
    changed = jax.tree_util.tree_map(lambda v: v, ff.params)
    changed["ProperTorsions"] = dict(changed["ProperTorsions"])
    changed["ProperTorsions"]["k"] = changed["ProperTorsions"]["k"] * 1.1
    changed["vdW"] = dict(changed["vdW"])
    changed["vdW"]["epsilon"] = changed["vdW"]["epsilon"] * 0.95
    ff.to_offxml(tmp_path / "changed.offxml", changed)
    reread = ForceField(tmp_path / "changed.offxml")
    e_changed = system.energy(x, params=changed)
    mols = [Molecule.from_smiles("CC(=O)Nc1ccccc1"), Molecule.from_smiles("O"),
            Molecule.from_smiles("[Na+]")]
    for m in mols:
        m.partial_charges = gasteiger_charges(m)
    retyped = reread.create_system(mols, charges="from-file")
    assert retyped.energy(x) == pytest.approx(e_changed, rel=1e-12)
    assert e_changed != pytest.approx(system.energy(x), rel=1e-6)


def test_written_offxml_loads_in_the_openff_toolkit(case, tmp_path):
    from openff.toolkit import ForceField as OFFForceField

    ff, _, _ = case
    ff.to_offxml(tmp_path / "out.offxml")
    loaded = OFFForceField(str(tmp_path / "out.offxml"))
    assert len(loaded["Bonds"].parameters) == len(ff.file.handlers["Bonds"].parameters)


def test_instances_unused_and_select(case):
    ff, system, _ = case
    inst = ff.instances(system)
    # the C-N amide bond of acetanilide and the water oxygen's library charge are listed
    bond_ids = {pid for (h, pid) in inst if h == "Bonds"}
    assert bond_ids and all(isinstance(t, tuple) for v in inst.values() for _, t in v)
    lib = [k for k in inst if k[0] == "LibraryCharges"]
    assert ("LibraryCharges", "Na+") in lib
    unused = ff.unused_parameters(system)
    every = {(h, p) for h, a in ff.row_info.items() for i in a.values() for p in i.ids}
    assert set(unused) | set(inst) == every and not set(unused) & set(inst)
    assert ("Bonds", "b1") in unused  # [#6X4]-[#6X4]: no such bond in these molecules
    assert inst[("Bonds", "b3")] == [("Bonds", (0, 1))]  # CH3-C(=O): b3 wins over b2
    # select by id, SMIRKS pattern and attribute
    mask = ff.select(ids={"t1", "t2"}, attributes={"k"})
    assert int(mask["ProperTorsions"]["k"].sum()) == 1 + 3  # t1 has one term, t2 three
    assert int(mask["ProperTorsions"]["phase"].sum()) == 0
    assert int(mask["Bonds"]["k"].sum()) == 0
    amide = ff.select(smirks=r"#7", attributes={"length"})
    assert 0 < int(amide["Bonds"]["length"].sum()) < mask_size(ff, "Bonds", "length")


def mask_size(ff, handler, attr):
    return len(ff.row_info[handler][attr].ids)


def test_theta_is_shared_so_gradients_from_molecules_add(case):
    ff, _, _ = case
    a, b = Molecule.from_smiles("CCO"), Molecule.from_smiles("CCCO")
    for m in (a, b):
        m.partial_charges = gasteiger_charges(m)
    sa, sb = ff.create_system(a, charges="from-file"), ff.create_system(b, charges="from-file")

    def total(theta):
        return (sa.energy_fn()(jnp.asarray(a.positions), None, theta)
                + sb.energy_fn()(jnp.asarray(b.positions), None, theta))

    g = jax.grad(total)(ff.params)
    ga = jax.grad(sa.energy_fn(), argnums=2)(jnp.asarray(a.positions), None, ff.params)
    gb = jax.grad(sb.energy_fn(), argnums=2)(jnp.asarray(b.positions), None, ff.params)
    for x, y, z in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ga),
                       jax.tree_util.tree_leaves(gb), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y) + np.asarray(z), rtol=1e-12,
                                   atol=1e-12)


def test_host_and_traced_slot_maps_agree(case):
    ff, system, _ = case
    flat = np.asarray(ravel_pytree(ff.params)[0])
    for attrs in system.source.maps.values():
        for m in attrs.values():
            np.testing.assert_allclose(m.apply_host(flat), np.asarray(m.apply(jnp.asarray(flat))),
                                       rtol=1e-15, atol=0)
