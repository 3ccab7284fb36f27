"""``chronograd simulate``: build (or load) a system, optionally minimize, run dynamics with
reporters and checkpoints, resume after a crash.

    chronograd simulate --ff openff-2.2.1.offxml --smiles CCO --liquid 200 --density 0.78 \\
        --steps 50000 --timestep 2fs --temperature 300K --pressure 1bar --minimize -o run.dcd
    chronograd simulate SYSTEM.json --positions start.pdb --steps 10000 -o run.xtc
    chronograd simulate ... --checkpoint run.chk --resume      # continue a crashed run
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from chronograd import units
from chronograd.errors import InputError

INTEGRATORS = ("langevin", "verlet", "nose-hoover", "brownian")
PME_GRIDS = ("fft", "exact")


def parse_quantity(text: str, kind: str, default_unit: str) -> float:
    """'2fs', '2 fs', '0.002' (default unit) -> value in ps / K / bar."""
    expected = {"time": units.TIME, "temperature": units.TEMPERATURE,
                "pressure": units.PRESSURE}[kind]
    try:
        return units.parse_quantity(text, expected, default_unit=default_unit, what=kind)[0]
    except InputError as exc:
        raise InputError(f"--{kind if kind != 'time' else 'timestep'}: {exc}; write e.g."
                         " '2fs', '300K', '1bar'") from None


def check_options(*, timestep, temperature, pressure, friction, steps, report_every,
                  integrator, output, state_data, checkpoint, resume, seed, solvate, liquid,
                  density, precision="double", pme_grid="fft") -> dict:
    """Every option of ``chronograd simulate`` checked (values, units, physical sense, output
    folders) before anything is built or written; returns the run options in internal units.
    """
    from chronograd.cli.main import check_output_path

    dt = parse_quantity(timestep, "time", "ps")
    temp = parse_quantity(temperature, "temperature", "K")
    press = None if pressure is None else parse_quantity(pressure, "pressure", "bar")
    if not dt > 0:
        raise InputError(f"--timestep must be positive, got {timestep!r}")
    if temp < 0:
        raise InputError(f"--temperature must be >= 0 K, got {temperature!r}")
    if press is not None and press < 0:
        raise InputError(f"--pressure must be >= 0 bar, got {pressure!r}")
    if not math.isfinite(friction) or friction < 0:
        raise InputError(f"--friction must be a finite number >= 0 (1/ps), got {friction}")
    if integrator == "brownian" and not friction > 0:
        raise InputError("--integrator brownian needs --friction > 0")
    if integrator not in INTEGRATORS:
        raise InputError(f"unknown integrator {integrator!r}; use {', '.join(INTEGRATORS)}")
    if precision not in ("double", "mixed"):
        raise InputError(f"--precision must be 'double' or 'mixed', got {precision!r}")
    if pme_grid not in PME_GRIDS:
        raise InputError(f"--pme-grid must be one of {', '.join(PME_GRIDS)}, got {pme_grid!r}")
    if steps < 1:
        raise InputError(f"--steps must be at least 1, got {steps}")
    if report_every < 1 or steps % report_every:
        raise InputError(f"--steps ({steps}) must be a multiple of --report-every"
                         f" ({report_every})")
    if not 0 <= seed < 2**32:
        raise InputError(f"--seed must be in 0 .. 2**32 - 1, got {seed}")
    if solvate is not None and not (math.isfinite(solvate) and solvate > 0):
        raise InputError(f"--solvate must be a positive padding in nm, got {solvate}")
    if solvate is not None and liquid is not None:
        raise InputError("give --solvate or --liquid, not both")
    if liquid is not None and liquid < 1:
        raise InputError(f"--liquid must be at least 1 molecule, got {liquid}")
    if density is not None and not (math.isfinite(density) and density > 0):
        raise InputError(f"--density must be positive (g/mL), got {density}")
    if output.suffix.lower() not in (".dcd", ".xtc"):
        raise InputError(f"{output}: the trajectory must end in .dcd or .xtc")
    check_output_path(output, "trajectory")
    check_output_path(state_data, "state data")
    check_output_path(checkpoint, "checkpoint")
    if resume and (checkpoint is None or not Path(checkpoint).is_file()):
        raise InputError("--resume needs an existing --checkpoint file")
    return {"steps": steps, "timestep": dt, "temperature": temp, "pressure": press,
            "friction": friction, "integrator": integrator, "output": output,
            "report_every": report_every, "state_data": state_data, "checkpoint": checkpoint,
            "resume": resume, "seed": seed, "precision": precision, "pme_grid": pme_grid}


def choose_pme_grid(system, pme_grid: str, echo):
    """``--pme-grid fft`` (default): PME grid axes rounded up to FFT-friendly sizes, as OpenMM's
    CPU platform runs them (System.with_fft_pme_grid); ``exact``: the derived sizes, as
    OpenMM's Reference platform runs them. Says what it chose when the two differ."""
    if pme_grid == "exact":
        return system
    fast = system.with_fft_pme_grid()
    before, after = system.nonbonded, fast.nonbonded
    if fast is not system and (before.grid, before.lj_grid) != (after.grid, after.lj_grid):
        def size(g):
            return "x".join(map(str, g))
        echo(f"PME grid {size(before.grid)} -> {size(after.grid)} (FFT-friendly sizes, as"
             f" OpenMM's CPU platform runs; --pme-grid exact keeps {size(before.grid)})")
    return fast


def load_system(system_json: Path, positions: Path):
    """(system, positions, box, None) from a System JSON and a PDB."""
    from chronograd.interop.files import read_pdb_positions
    from chronograd.system.serialize import load

    system = load(system_json)
    pos, box = read_pdb_positions(positions)
    pos, box = system.check_inputs(pos, box if system.periodic else None, where=str(positions))
    return system, pos, box, None


def build_from_force_field(ff_names: str | None, molecule, smiles, charges, solvate, liquid,
                           density, *, potential=None):
    """(system, positions, box, molecules) from a SMIRNOFF force field (or a learned
    potential, alone or on its force field) and one molecule, in vacuum, solvated in water,
    or as a neat liquid."""
    from chronograd.cli.smirnoff_commands import load_force_field_and_molecule, resolve_charges
    from chronograd.topology.boxes import liquid_box
    from chronograd.topology.boxes import solvate as solvate_molecule

    if potential is not None:
        from chronograd.cli.smirnoff_commands import load_molecule
        from chronograd.ml.model_files import PotentialBuilder
        from chronograd.space.positions import check_positions

        ff = PotentialBuilder(potential, ff_names)
        mol = load_molecule(molecule, smiles)
        check_positions(mol.positions, where=str(molecule) if molecule else None)
    else:
        ff, mol = load_force_field_and_molecule(ff_names, molecule, smiles)
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


def run_simulation(*, system, positions, box, molecules, steps, timestep, temperature,
                   pressure, friction, integrator, minimize_first, output, report_every,
                   checkpoint, resume, seed, state_data, echo, precision="double",
                   pme_grid="fft"):
    """Build the integrator, check the inputs against the system, then (only then) write the
    starting PDB and run. On a blow-up the last good state is written next to the trajectory
    and the error names it."""
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
        save_checkpoint,
    )
    from chronograd.dynamics.runner import SimulationError, simulate
    from chronograd.minimize import minimize

    makers = {
        "langevin": lambda: langevin(system, timestep=timestep, temperature=temperature,
                                     friction=friction, precision=precision),
        "verlet": lambda: velocity_verlet(system, timestep=timestep, precision=precision),
        "nose-hoover": lambda: nose_hoover(system, timestep=timestep, temperature=temperature,
                                           precision=precision),
        "brownian": lambda: brownian(system, timestep=timestep, temperature=temperature,
                                     friction=friction, precision=precision),
    }
    if pressure is not None and box is None:
        raise InputError("--pressure needs a periodic box (use --solvate or --liquid)")
    system = choose_pme_grid(system, pme_grid, echo)
    full, box = system.check_inputs(positions, box)
    integ = makers[integrator]()
    barostat = None
    if pressure is not None:
        barostat = monte_carlo_barostat(integ, pressure=pressure, temperature=temperature)
    if resume:
        state = load_checkpoint(checkpoint, integ)
        echo(f"resuming from {checkpoint} at step {int(state.step)}")
    else:
        if molecules is not None:
            pdb = output.with_suffix(".pdb")
            write_topology_pdb(pdb, molecules, full, box, system.n_atoms)
            echo(f"wrote {pdb} (starting structure and topology)")
        if minimize_first:
            result = minimize(system, positions, box, precision=precision)
            echo(f"minimized: {result.energy:.2f} kJ/mol ({result.status}, "
                 f"{result.iterations} iterations)")
            if result.status == "non_finite":
                raise InputError("--minimize reached a non-finite energy; check the starting"
                                 " structure for overlapping atoms")
            if result.status != "converged":
                why = ("at its iteration limit" if result.status == "max_iterations" else
                       "short of its tolerance (no further decrease found)")
                echo(f"warning: minimization stopped {why} with an RMS force of"
                     f" {result.rms_force:.3g} kJ/mol/nm (tolerance 10); dynamics starts"
                     " from there")
            positions = result.positions
        state = integ.init(positions, key=jax.random.key(seed), box=box,
                           temperature=temperature)
    remaining = steps - int(state.step)
    if remaining <= 0:
        echo(f"nothing to do: the run is already at step {int(state.step)}")
        return state
    at = int(state.step)
    traj = (DCDReporter if output.suffix.lower() == ".dcd" else XTCReporter)(
        output, report_every, append=resume, resume_step=at)
    reporters = [traj, ProgressReporter(remaining, report_every)]
    if state_data is not None:
        reporters.append(StateDataReporter(state_data, report_every, append=resume,
                                           resume_step=at))
    if checkpoint is not None:
        reporters.append(CheckpointReporter(checkpoint, report_every))
    try:
        state = simulate(integ, state, remaining, reporters=reporters, barostat=barostat)
    except SimulationError as exc:
        if exc.last_good_state is None:
            raise
        last = output.with_name(output.stem + ".last_good.chk")
        save_checkpoint(last, exc.last_good_state, integ)
        raise SimulationError(
            f"the simulation blew up at step {exc.step}: {exc.reason}. The last good state"
            f" (step {int(exc.last_good_state.step)}) is written to {last} (continue from it"
            f" with --checkpoint {last} --resume) and the frames so far are in {output}; try a"
            " smaller --timestep, --minimize, or check the starting structure for clashes",
            exc.last_good_state) from None
    finally:
        for r in reporters:
            r.close()
    return state
