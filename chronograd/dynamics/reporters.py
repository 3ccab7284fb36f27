"""Host-side reporters, called by ``simulate`` between jitted chunks (OpenMM's reporter idea).

Each has ``every`` (steps) and ``report(state, info)``; ``info`` carries the integrator's
degrees of freedom, masses and timestep. Trajectories are written with mdtraj's DCD and XTC
writers; checkpoints are written to a temporary file and renamed, so a crash never leaves a
half-written checkpoint.
"""

from __future__ import annotations

import csv
from pathlib import Path

import jax
import numpy as np

from chronograd.dynamics.state import MDState
from chronograd.units import AVOGADRO, BOLTZMANN


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
        self._fingerprint = None

    def report(self, state, info):
        integrator = info["integrator"]
        if self._fingerprint is None:
            self._fingerprint = system_fingerprint(integrator.system)
        save_checkpoint(self.path, state, integrator, fingerprint=self._fingerprint)


CHECKPOINT_FORMAT = "chronograd.md-checkpoint"
CHECKPOINT_VERSION = 1


def system_fingerprint(system) -> str:
    """SHA-256 of the system as ``chronograd.save`` writes it (structure and parameters)."""
    import hashlib
    import json

    from chronograd.system.serialize import system_to_dict

    text = json.dumps(system_to_dict(system), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def save_checkpoint(path, state: MDState, integrator, *, fingerprint: str | None = None) -> None:
    """Write ``state`` as a checkpoint archive (JSON header + arrays, no pickle) that records
    the integrator and the SHA-256 of its system, checked by ``load_checkpoint``."""
    from chronograd.interop.archive import write_archive

    arrays = {
        "positions": np.asarray(state.positions),
        "velocities": np.asarray(state.velocities),
        "forces": np.asarray(state.forces),
        "potential_energy": np.asarray(state.potential_energy),
        "key": np.asarray(jax.random.key_data(state.key)),
        "box": np.zeros((3, 3)) if state.box is None else np.asarray(state.box),
    }
    for k, v in state.extra.items():
        arrays[f"extra:{k}"] = np.asarray(v)
    header = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
              "system_sha256": fingerprint or system_fingerprint(integrator.system),
              "integrator": integrator.name, "step": int(state.step),
              "has_box": state.box is not None}
    if state.neighbors is not None:
        header["neighbor_list"] = [int(state.neighbors.max_neighbors),
                                   int(state.neighbors.cell_capacity)]
    write_archive(path, header, arrays)


def load_checkpoint(path, integrator) -> MDState:
    """The state saved by a CheckpointReporter, ready for ``simulate`` with ``integrator``.

    Raises:
        InputError: the file is not an intact checkpoint of this version, or it belongs to
            another system or integrator (named), or its arrays do not fit the system.
    """
    import jax.numpy as jnp

    from chronograd.errors import InputError
    from chronograd.interop.archive import read_archive

    header, data = read_archive(path, format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION,
                                what="MD checkpoint")
    if header.get("system_sha256") != system_fingerprint(integrator.system):
        raise InputError(f"{path}: this checkpoint belongs to another system (its SHA-256"
                         " differs: other molecules, force field or parameters); resume with"
                         " the inputs that wrote it")
    if header.get("integrator") != integrator.name:
        raise InputError(f"{path}: written by the {header.get('integrator')!r} integrator;"
                         f" resume with the same integrator, not {integrator.name!r}")
    n = integrator.system.n_atoms
    key_shape = jax.random.key_data(jax.random.key(0)).shape
    shapes = {"positions": (n, 3), "velocities": (n, 3), "forces": (n, 3),
              "potential_energy": (), "box": (3, 3), "key": key_shape}
    for name, shape in shapes.items():
        a = data.get(name)
        if a is None or a.shape != shape or a.dtype.kind != ("u" if name == "key" else "f"):
            raise InputError(f"{path}: checkpoint array {name!r} has shape"
                             f" {None if a is None else a.shape}, expected {shape} for this"
                             " system")
    step, has_box = header.get("step"), header.get("has_box")
    if not isinstance(step, int) or step < 0 or not isinstance(has_box, bool):
        raise InputError(f"{path}: the checkpoint header is malformed (step, has_box)")
    box = jnp.asarray(data["box"]) if has_box else None
    x = jnp.asarray(data["positions"])
    nbrs = None
    if integrator.neighbor_fns is not None:
        sizes = header.get("neighbor_list")
        if not (isinstance(sizes, list) and len(sizes) == 2
                and all(isinstance(v, int) and v >= 0 for v in sizes)):
            raise InputError(f"{path}: the checkpoint has no neighbor-list sizes")
        nbrs = integrator.neighbor_fns.allocate(x, box, max_neighbors=sizes[0],
                                                cell_capacity=sizes[1])
    extra = {k.split(":", 1)[1]: jnp.asarray(v) for k, v in data.items()
             if k.startswith("extra:")}
    return MDState(x, jnp.asarray(data["velocities"]), jnp.asarray(data["forces"]),
                   jnp.asarray(data["potential_energy"]), box, nbrs, jnp.asarray(step),
                   jax.random.wrap_key_data(jnp.asarray(data["key"], jnp.uint32)), extra)


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
