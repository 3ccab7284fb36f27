"""Systems as data: many molecules through one compiled program, measured side by side.

(a) 100 MiniDrugBank molecules (the OpenFF toolkit's test set), openff-2.2.1, Gasteiger charges,
    vacuum, float64: energies + forces + every molecule's dU/dtheta, as a per-molecule loop
    (``system.energy_and_forces`` and a jitted ``jax.grad`` of ``system.energy_fn()`` per
    molecule: what a user wrote before batching) vs ``stack_systems`` (4 size buckets, one
    vmapped program). Wall time includes typing-free evaluation and all compilation; XLA
    compilations are counted with ``jax.monitoring``. Results are checked to agree.
(c) Memory of the compiled energy on solvated villin (8,867 atoms, PME) and on water boxes of
    increasing size: XLA's temporary buffer size of ``system.energy_fn()`` (neighbor list built
    inside) and of the compiled function behind ``system.energy(x, box)``, per atom.
(d) ``chronograd energy --ff openff-2.2.1.offxml *.sdf --charges from-file --json`` on 70
    drug-like SDFs in one process (start-up included), vs the same 70 single-file calls made
    one after the other in one process.
Run: `python benchmarks/bench_batch.py`.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402

import chronograd as cg  # noqa: E402
from chronograd.forcefield.charges import gasteiger_charges  # noqa: E402

FF = "openff-2.2.1.offxml"
ROOT = Path(__file__).resolve().parent.parent

_COMPILES = [0]


def _count(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count)


def drug_molecules(n: int):
    from openff.toolkit import Molecule as OFFMolecule

    path = importlib.resources.files("openff.toolkit") / "data/molecules/MiniDrugBank.sdf"
    ff = cg.ForceField(FF)
    out = []
    for off in OFFMolecule.from_file(str(path), allow_undefined_stereo=True):
        mol = cg.Molecule.from_rdkit(off.to_rdkit(), name=off.name)
        if mol.positions is None:
            continue
        mol.partial_charges = gasteiger_charges(mol)
        try:
            ff.create_system(mol, charges="from-file")
        except cg.ChronogradError:
            continue
        out.append(mol)
        if len(out) == n:
            break
    return ff, out


def part_a(ff, mols):
    systems = [ff.create_system(m, charges="from-file") for m in mols]
    xs = [np.asarray(m.positions) for m in mols]
    start = _COMPILES[0]
    t = time.perf_counter()
    loop = []
    for s, x in zip(systems, xs, strict=True):
        e, f = s.energy_and_forces(x)
        g = jax.jit(jax.grad(s.energy_fn(), argnums=2))(x, None, s.params)
        loop.append((e, f, jax.block_until_ready(g)))
    t_loop, c_loop = time.perf_counter() - t, _COMPILES[0] - start

    start = _COMPILES[0]
    t = time.perf_counter()
    batch = cg.stack_systems(systems)
    energies, forces = batch.energies_and_forces(xs)
    grads = batch.param_gradient(xs, per_system=True)
    t_batch, c_batch = time.perf_counter() - t, _COMPILES[0] - start

    t = time.perf_counter()
    batch.energies_and_forces(xs)
    batch.param_gradient(xs, per_system=True)
    t_again = time.perf_counter() - t

    flat = jax.flatten_util.ravel_pytree
    err = max(max(abs(e - energies[k]) / max(abs(e), 1.0),
                  float(np.abs(f - forces[k]).max() / np.abs(f).max()),
                  float(np.abs(flat(g)[0] - flat(grads[k])[0]).max()
                        / np.abs(flat(g)[0]).max()))
              for k, (e, f, g) in enumerate(loop))
    atoms = [s.n_atoms for s in systems]
    return (f"| {len(systems)} molecules ({min(atoms)}-{max(atoms)} atoms), energies + forces +"
            f" dU/dtheta | {t_loop:.1f} s, {c_loop} compilations | {t_batch:.1f} s,"
            f" {c_batch} compilations ({len(batch.buckets)} buckets) | {t_loop / t_batch:.1f}x"
            f" | {t_again * 1000:.0f} ms | {err:.1e} |")


def _memory_row(label, system, x, box):
    n = system.n_atoms
    u = jax.jit(system.energy_fn())
    lowered = u.lower(x, box, system.params).compile()
    temp_fn = lowered.memory_analysis().temp_size_in_bytes
    from chronograd.system.system import _VALUE_AND_GRAD_JIT

    nbrs = system.neighbor_list().allocate(x, box)
    compiled = _VALUE_AND_GRAD_JIT.lower(system.structure, x, box, system.params,
                                         nbrs).compile()
    temp_host = compiled.memory_analysis().temp_size_in_bytes
    e_fn = float(u(x, box, system.params))
    e_host = system.energy(x, box)
    pairs = n * (n - 1) // 2
    return (f"| {label} | {n} | {temp_fn / 2**20:.1f} MiB ({temp_fn / n / 1024:.1f} KiB/atom) |"
            f" {temp_host / 2**20:.1f} MiB ({temp_host / n / 1024:.1f} KiB/atom) |"
            f" {pairs / 1e6:.1f} M ({pairs * 8 * 6 / 2**30:.1f} GiB) |"
            f" {abs(e_fn - e_host) / abs(e_host):.1e} |")


def part_c():
    sys.path.insert(0, str(ROOT / "tests"))
    from reference_systems import villin, water_box

    rows = []
    for size in (2.5, 3.5):
        omm, pos, box = water_box(box_nm=size)
        rows.append(_memory_row(f"TIP3P water {size} nm", cg.from_openmm(omm), pos, box))
    omm, pos, box = villin(True)
    rows.append(_memory_row("villin solvated", cg.from_openmm(omm), pos, box))
    return rows


def part_d(mols):
    from rdkit import Chem

    from chronograd.cli.main import main

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for k, m in enumerate(mols):
            rd = Chem.Mol(m.rdmol)
            for a, q in zip(rd.GetAtoms(), m.partial_charges, strict=True):
                a.SetDoubleProp("PartialCharge", float(q))
            Chem.CreateAtomDoublePropertyList(rd, "PartialCharge")
            path = Path(tmp) / f"mol{k:03d}.sdf"
            writer = Chem.SDWriter(str(path))
            writer.write(rd)
            writer.close()
            files.append(path.name)
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "chronograd.cli.main", "energy", "--ff", FF,
                              *files, "--charges", "from-file", "--json"], cwd=tmp,
                             capture_output=True, text=True)
        t_batch = time.perf_counter() - t
        assert res.returncode == 0, res.stderr
        batched = [json.loads(line)["total"] for line in res.stdout.splitlines()]
        t = time.perf_counter()
        single = []
        for f in files:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = main(["energy", "--ff", FF, str(Path(tmp) / f), "--charges",
                             "from-file", "--json"])
            assert code == 0
            single.append(json.loads(out.getvalue())["total"])
        t_loop = time.perf_counter() - t
    err = max(abs(a - b) / max(abs(b), 1.0) for a, b in zip(batched, single, strict=True))
    return (f"| `chronograd energy` on {len(files)} SDFs, charges from file | {t_loop:.1f} s"
            f" (single-file calls in one process, after start-up) | {t_batch:.1f} s (one call,"
            f" start-up included) | {t_loop / t_batch:.1f}x | - | {err:.1e} |")


HEAD_A = ("| workload | per-molecule loop | batched (`stack_systems`) | speed-up |"
          " batched again (compiled) | max rel. difference |\n|---|---|---|---|---|---|")
HEAD_C = ("| system | atoms | `energy_fn()` (jit) | `system.energy(x, box)` (value and forces) |"
          " all pairs would be (6 f64 arrays) | energy difference |\n|---|---|---|---|---|---|")


def main():
    ff, mols = drug_molecules(100)
    row_a = part_a(ff, mols)
    print(row_a, flush=True)
    row_d = part_d(mols[:70])
    print(row_d, flush=True)
    rows_c = part_c()
    body = f"""## Systems as data: many molecules in one compiled program

Command: `python benchmarks/bench_batch.py` (all numbers from one run).
{machine_line()}

{HEAD_A}
{row_a}
{row_d}

Molecules: the first MiniDrugBank records (OpenFF toolkit test data) that openff-2.2.1 types,
Gasteiger charges, vacuum, float64. Compilations are XLA backend compilations counted with
`jax.monitoring`; the loop compiles per molecule, the batch once per bucket.

Memory of the compiled energy (XLA temporary buffers; pairs come from a neighbor list
built inside `energy_fn()`, or allocated on the host for `system.energy`):

{HEAD_C}
{chr(10).join(rows_c)}
"""
    write_section("batch", body)


if __name__ == "__main__":
    main()
