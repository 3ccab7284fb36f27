"""``chronograd simulate``: build (or load) a system, optionally minimize, run dynamics with
reporters and checkpoints, resume after a crash.

    chronograd simulate --ff openff-2.2.1.offxml --smiles CCO --liquid 200 --density 0.78 \\
        --steps 50000 --timestep 2fs --temperature 300K --pressure 1bar --minimize -o run.dcd
    chronograd simulate SYSTEM.json --positions start.pdb --steps 10000 -o run.xtc
    chronograd simulate ... --checkpoint run.chk --resume      # continue a crashed run
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from chronograd.errors import InputError

_UNITS = {
    "time": {"fs": 1e-3, "ps": 1.0, "ns": 1e3},
    "temperature": {"k": 1.0},
    "pressure": {"bar": 1.0, "atm": 1.01325, "kpa": 0.01, "pa": 1e-5},
}


def parse_quantity(text: str, kind: str, default_unit: str) -> float:
    """'2fs', '2 fs', '0.002' (default unit) -> value in ps / K / bar."""
    m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([A-Za-z]*)\s*", str(text))
    if not m:
        raise InputError(f"cannot read {kind} {text!r}; write e.g. '2fs', '300K', '1bar'")
    unit = (m.group(2) or default_unit).lower()
    if unit not in _UNITS[kind]:
        raise InputError(f"unknown {kind} unit {m.group(2)!r} in {text!r}; use one of"
                         f" {', '.join(_UNITS[kind])}")
    return float(m.group(1)) * _UNITS[kind][unit]


def build_from_force_field(ff_names: str, molecule, smiles, charges, solvate, liquid, density):
    """(system, positions, box, molecules) from a SMIRNOFF force field and one molecule,
    in vacuum, solvated in water, or as a neat liquid."""
    from chronograd.cli.smirnoff_commands import load_molecule, resolve_charges
    from chronograd.forcefield import ForceField
    from chronograd.topology.boxes import liquid_box
    from chronograd.topology.boxes import solvate as solvate_molecule

    mol = load_molecule(molecule, smiles)
    if mol.positions is None:
        raise InputError(f"{molecule}: the molecule has no coordinates")
    ff = ForceField(*[n.strip() for n in ff_names.split(",")])
    if solvate is not None and liquid is not None:
        raise InputError("give --solvate or --liquid, not both")
    if solvate is not None:
        mols, pos, box = solvate_molecule(mol, padding_nm=solvate)
    elif liquid is not None:
        if density is None:
            raise InputError("--liquid N needs --density (g/mL) for the starting box")
        mols, pos, box = liquid_box(mol, liquid, density_g_ml=density)
    else:
        mols, pos, box = [mol], mol.positions, None
    system = ff.create_system(mols, charges=resolve_charges(mol, charges), box=box)
    return system, pos, box, mols


def write_topology_pdb(path: Path, molecules, positions, box, n_particles: int) -> None:
    """A PDB of the starting frame (elements, bonds, one residue per molecule, virtual sites
    as 'EP'), so that viewers can open the DCD/XTC trajectory."""
    import mdtraj

    top = mdtraj.Topology()
    chain = top.add_chain()
    atoms = []
    for k, mol in enumerate(molecules):
        res = top.add_residue("HOH" if mol.name == "water" else f"M{k % 1000:03d}"[:3]
                              if len(molecules) > 1 else "MOL", chain)
        local = []
        for a in mol.rdmol.GetAtoms():
            el = mdtraj.element.get_by_symbol(a.GetSymbol())
            local.append(top.add_atom(f"{a.GetSymbol()}{a.GetIdx() + 1}"[:4], el, res))
        for b in mol.rdmol.GetBonds():
            top.add_bond(local[b.GetBeginAtomIdx()], local[b.GetEndAtomIdx()])
        atoms += local
    if n_particles > len(atoms):  # virtual sites come after all atoms
        res = top.add_residue("EPW", chain)
        for _ in range(n_particles - len(atoms)):
            top.add_atom("EP", mdtraj.element.virtual_site, res)
    traj = mdtraj.Trajectory(np.asarray(positions, np.float32)[None], top)
    if box is not None:
        traj.unitcell_vectors = np.asarray(box, np.float32)[None]
    traj.save_pdb(str(path))


def run_simulation(*, system, positions, box, steps, timestep, temperature, pressure, friction,
                   integrator, minimize_first, output, report_every, checkpoint, resume, seed,
                   state_data, echo):
    import jax

    from chronograd.dynamics import brownian, langevin, nose_hoover, velocity_verlet
    from chronograd.dynamics.barostat import monte_carlo_barostat
    from chronograd.dynamics.reporters import (
        CheckpointReporter,
        DCDReporter,
        ProgressReporter,
        StateDataReporter,
        XTCReporter,
        load_checkpoint,
    )
    from chronograd.dynamics.runner import simulate
    from chronograd.minimize import minimize

    makers = {
        "langevin": lambda: langevin(system, timestep=timestep, temperature=temperature,
                                     friction=friction),
        "verlet": lambda: velocity_verlet(system, timestep=timestep),
        "nose-hoover": lambda: nose_hoover(system, timestep=timestep, temperature=temperature),
        "brownian": lambda: brownian(system, timestep=timestep, temperature=temperature,
                                     friction=friction),
    }
    if integrator not in makers:
        raise InputError(f"unknown integrator {integrator!r}; use {', '.join(makers)}")
    if report_every < 1 or steps % report_every:
        raise InputError(f"--steps ({steps}) must be a multiple of --report-every"
                         f" ({report_every})")
    suffix = output.suffix.lower()
    if suffix not in (".dcd", ".xtc"):
        raise InputError(f"{output}: the trajectory must end in .dcd or .xtc")
    if pressure is not None and box is None:
        raise InputError("--pressure needs a periodic box (use --solvate or --liquid)")
    integ = makers[integrator]()
    barostat = None
    if pressure is not None:
        barostat = monte_carlo_barostat(integ, pressure=pressure, temperature=temperature)
    if resume:
        if checkpoint is None or not Path(checkpoint).exists():
            raise InputError("--resume needs an existing --checkpoint file")
        state = load_checkpoint(checkpoint, integ)
        echo(f"resuming from {checkpoint} at step {int(state.step)}")
    else:
        if minimize_first:
            result = minimize(system, positions, box)
            echo(f"minimized: {result.energy:.2f} kJ/mol ({result.status}, "
                 f"{result.iterations} iterations)")
            positions = result.positions
        state = integ.init(positions, key=jax.random.key(seed), box=box,
                           temperature=temperature)
    remaining = steps - int(state.step)
    if remaining <= 0:
        echo(f"nothing to do: the run is already at step {int(state.step)}")
        return state
    at = int(state.step)
    traj = (DCDReporter if suffix == ".dcd" else XTCReporter)(output, report_every,
                                                              append=resume, resume_step=at)
    reporters = [traj, ProgressReporter(remaining, report_every)]
    if state_data is not None:
        reporters.append(StateDataReporter(state_data, report_every, append=resume,
                                           resume_step=at))
    if checkpoint is not None:
        reporters.append(CheckpointReporter(checkpoint, report_every))
    try:
        state = simulate(integ, state, remaining, reporters=reporters, barostat=barostat)
    finally:
        for r in reporters:
            r.close()
    return state
