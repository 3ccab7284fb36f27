"""Host-side reporters, called by ``simulate`` between jitted chunks (OpenMM's reporter idea).

Each has ``every`` (steps) and ``report(state, info)``; ``info`` carries the integrator's
degrees of freedom, masses and timestep. Trajectories are written with mdtraj's DCD and XTC
writers; checkpoints are written to a temporary file and renamed, so a crash never leaves a
half-written checkpoint.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import jax
import numpy as np

from chronograd.dynamics.state import BOLTZMANN, MDState
from chronograd.units import AVOGADRO


def _volume(box) -> float:
    return float(abs(np.linalg.det(np.asarray(box)))) if box is not None else float("nan")


def _cell(box):
    """mdtraj unit-cell lengths and angles (degrees) from box vectors (rows)."""
    import mdtraj

    b = np.asarray(box, np.float64)[None]
    a, b_, c, alpha, beta, gamma = mdtraj.utils.box_vectors_to_lengths_and_angles(
        b[:, 0], b[:, 1], b[:, 2])
    return np.stack([a, b_, c], -1), np.stack([alpha, beta, gamma], -1)


class Reporter:
    every: int = 100

    def report(self, state: MDState, info: dict) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class StateDataReporter(Reporter):
    """CSV: step, time (ps), potential, kinetic, total energy (kJ/mol), temperature (K),
    volume (nm^3), density (g/mL). Appends when resuming (``append=True``)."""

    FIELDS = ("step", "time_ps", "potential_kj_mol", "kinetic_kj_mol", "total_kj_mol",
              "temperature_k", "volume_nm3", "density_g_ml")

    def __init__(self, path, every: int = 100, *, append: bool = False,
                 resume_step: int | None = None):
        self.path, self.every = Path(path), int(every)
        kept = []
        if append and self.path.exists():  # keep rows up to the step the run resumes from
            with open(self.path, newline="") as f:
                kept = [r for r in list(csv.reader(f))[1:]
                        if resume_step is None or int(r[0]) <= resume_step]
        self._file = open(self.path, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.FIELDS)
        self._writer.writerows(kept)

    def report(self, state, info):
        m = info["masses"]
        ke = 0.5 * float(np.sum(m[:, None] * np.asarray(state.velocities) ** 2))
        pe = float(state.potential_energy)
        vol = _volume(state.box)
        density = float(np.sum(m)) / AVOGADRO / (vol * 1e-21) if np.isfinite(vol) else ""
        step = int(state.step)
        self._writer.writerow([step, step * info["timestep"], pe, ke, pe + ke,
                               2 * ke / (info["dof"] * BOLTZMANN), vol if vol == vol else "",
                               density])
        self._file.flush()

    def close(self):
        self._file.close()


class _TrajectoryReporter(Reporter):
    """With ``append``, the frames already in the file up to ``resume_step`` are kept (a
    frame written after the last checkpoint of a crashed run is dropped) and new ones follow.
    """

    def __init__(self, path, every: int = 1000, *, append: bool = False,
                 resume_step: int | None = None):
        self.path, self.every = Path(path), int(every)
        kept = self._read_kept(resume_step) if append and self.path.exists() else None
        self._handle = self._open("w")
        if kept is not None:
            self._write_frames(*kept)

    def close(self):
        self._handle.close()


class DCDReporter(_TrajectoryReporter):
    """DCD frames (Angstrom, as the format stores them) with unit cells."""

    def _open(self, mode):
        from mdtraj.formats import DCDTrajectoryFile

        return DCDTrajectoryFile(str(self.path), mode)

    def _read_kept(self, resume_step):
        from mdtraj.formats import DCDTrajectoryFile

        with DCDTrajectoryFile(str(self.path), "r") as f:
            xyz, lengths, angles = f.read()
        n = len(xyz) if resume_step is None else min(len(xyz), resume_step // self.every)
        return xyz[:n], None if lengths is None else lengths[:n], \
            None if angles is None else angles[:n]

    def _write_frames(self, xyz, lengths, angles):
        if len(xyz):
            self._handle.write(xyz, cell_lengths=lengths, cell_angles=angles)

    def report(self, state, info):
        xyz = np.asarray(state.positions, np.float32)[None] * 10.0
        if state.box is None:
            self._handle.write(xyz)
        else:
            lengths, angles = _cell(state.box)
            self._handle.write(xyz, cell_lengths=np.asarray(lengths).reshape(1, 3) * 10.0,
                               cell_angles=np.asarray(angles).reshape(1, 3))


class XTCReporter(_TrajectoryReporter):
    """XTC frames (nm) with time (ps), step and box."""

    def _open(self, mode):
        from mdtraj.formats import XTCTrajectoryFile

        return XTCTrajectoryFile(str(self.path), mode)

    def _read_kept(self, resume_step):
        from mdtraj.formats import XTCTrajectoryFile

        with XTCTrajectoryFile(str(self.path), "r") as f:
            xyz, time, step, box = f.read()
        keep = np.ones(len(xyz), bool) if resume_step is None else step <= resume_step
        return xyz[keep], time[keep], step[keep], None if box is None else box[keep]

    def _write_frames(self, xyz, time, step, box):
        if len(xyz):
            self._handle.write(xyz, time=time, step=step, box=box)

    def report(self, state, info):
        step = int(state.step)
        box = None if state.box is None else np.asarray(state.box, np.float32)[None]
        self._handle.write(np.asarray(state.positions, np.float32)[None],
                           time=np.array([step * info["timestep"]], np.float32),
                           step=np.array([step], np.int32), box=box)


class CheckpointReporter(Reporter):
    """Everything needed to continue a run exactly (``load_checkpoint``), every ``every``
    steps, written atomically."""

    def __init__(self, path, every: int = 1000):
        self.path, self.every = Path(path), int(every)

    def report(self, state, info):
        save_checkpoint(self.path, state)


def save_checkpoint(path, state: MDState) -> None:
    data = {
        "positions": np.asarray(state.positions),
        "velocities": np.asarray(state.velocities),
        "forces": np.asarray(state.forces),
        "potential_energy": np.asarray(state.potential_energy),
        "step": np.asarray(state.step),
        "key": np.asarray(jax.random.key_data(state.key)),
        "has_box": np.asarray(state.box is not None),
        "box": np.zeros((3, 3)) if state.box is None else np.asarray(state.box),
    }
    for k, v in state.extra.items():
        data[f"extra:{k}"] = np.asarray(v)
    if state.neighbors is not None:
        data["nl_max_neighbors"] = np.asarray(state.neighbors.max_neighbors)
        data["nl_cell_capacity"] = np.asarray(state.neighbors.cell_capacity)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **data)
    os.replace(tmp, path)


def load_checkpoint(path, integrator) -> MDState:
    """The state saved by a CheckpointReporter, ready for ``simulate`` with ``integrator``."""
    import jax.numpy as jnp

    from chronograd.errors import InputError

    try:
        data = np.load(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a chronograd checkpoint ({exc})") from None
    n = integrator.system.n_atoms
    if data["positions"].shape != (n, 3):
        raise InputError(f"{path}: checkpoint has {data['positions'].shape[0]} particles, the"
                         f" system {n}")
    box = jnp.asarray(data["box"]) if bool(data["has_box"]) else None
    x = jnp.asarray(data["positions"])
    nbrs = None
    if integrator.neighbor_fns is not None:
        nbrs = integrator.neighbor_fns.allocate(
            x, box, max_neighbors=int(data["nl_max_neighbors"]),
            cell_capacity=int(data["nl_cell_capacity"]))
    extra = {k.split(":", 1)[1]: jnp.asarray(data[k]) for k in data.files
             if k.startswith("extra:")}
    return MDState(x, jnp.asarray(data["velocities"]), jnp.asarray(data["forces"]),
                   jnp.asarray(data["potential_energy"]), box, nbrs, jnp.asarray(data["step"]),
                   jax.random.wrap_key_data(jnp.asarray(data["key"])), extra)


class ReservoirReporter(Reporter):
    """A uniform random sample of ``size`` frames from an arbitrarily long run (reservoir
    sampling, Vitter's algorithm R), for time averages; ``frames`` and ``steps`` hold it."""

    def __init__(self, size: int, every: int = 100, *, seed: int = 0):
        self.size, self.every = int(size), int(every)
        self._rng = np.random.default_rng(seed)
        self.frames: list[np.ndarray] = []
        self.boxes: list = []
        self.steps: list[int] = []
        self.seen = 0

    def report(self, state, info):
        frame = np.asarray(state.positions)
        box = None if state.box is None else np.asarray(state.box)
        self.seen += 1
        if len(self.frames) < self.size:
            self.frames.append(frame)
            self.boxes.append(box)
            self.steps.append(int(state.step))
            return
        j = int(self._rng.integers(0, self.seen))
        if j < self.size:
            self.frames[j], self.boxes[j], self.steps[j] = frame, box, int(state.step)


class ProgressReporter(Reporter):
    """A rich progress bar over the run's steps."""

    def __init__(self, total_steps: int, every: int = 100):
        from rich.progress import Progress

        self.every = int(every)
        self._progress = Progress(transient=False)
        self._task = self._progress.add_task("simulating", total=total_steps)
        self._start = None
        self._progress.start()

    def report(self, state, info):
        step = int(state.step)
        if self._start is None:
            self._start = step - self.every
        self._progress.update(self._task, completed=step - self._start)

    def close(self):
        self._progress.stop()
