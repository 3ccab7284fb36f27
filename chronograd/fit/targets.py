"""Fitting targets: QM relative energies and forces, and torsion profiles.

A target is built once (setup layer: systems, charges, compiled functions) and then maps theta
to a residual vector r(theta) (pure JAX), scaled so that its contribution to the objective is
``sum(r**2)``:

    energy rows  sqrt(w_E / n_E) * ((U_i - ref U) - (E_i - ref E)) / energy_denominator
    force rows   sqrt(w_F / n_F) * (F_mm - F_qm)_component / force_denominator

``ref`` is the mean over the record's geometries (conformer sets) or the value at the QM
minimum (torsion profiles), as ForceBalance's AbInitio and TorsionProfile targets do;
n_E / n_F count rows over the whole target, so a target's weight does not grow with its size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.fit.data import QMRecord
from chronograd.fit.qm_batch import QMGeometries
from chronograd.potentials.geometry import bond_angles, bond_lengths

KCAL = 4.184  # kJ/mol
KCAL_PER_A = 41.84  # kJ/mol/nm


class _Record:
    """One molecule's system and its per-geometry energy + forces (``batch``: a vmapped
    function of (positions [G, N, 3], theta), for systems that cannot join a padded batch)."""

    def __init__(self, ff, record: QMRecord, charges):
        self.record = record
        self.system = ff.create_system(record.molecule, charges=charges)
        U = self.system.energy_fn()
        value_and_force = jax.value_and_grad(lambda x, p: U(x, None, p))
        self.batch = jax.vmap(value_and_force, in_axes=(0, None))
        self._compiled = None

    def energies_forces(self, theta, positions=None):
        """(U [n], F [n, N, 3]) at this record's geometries, or at ``positions`` [n, N, 3]
        (numpy; compiled once per record)."""
        if self._compiled is None:
            self._compiled = jax.jit(self.batch)
        x = self.record.positions if positions is None else positions
        u, g = self._compiled(jnp.asarray(x), theta)
        return np.asarray(u), -np.asarray(g)


def _layout(records, fitted, reference, with_forces):
    """(QMGeometries of every geometry, of the fitted ones, static arrays of the residual
    layout) or (None, None, None) when the systems cannot share a batch (e.g. virtual sites):
    then each record is evaluated on its own."""
    ids = [r.record.id for r in records]
    systems = [r.system for r in records]
    try:
        every = QMGeometries(systems, [r.record.positions for r in records], ids)
        fit = QMGeometries(systems, [f.positions for f in fitted], ids)
    except InputError:
        return None, None, None
    n_geo = sum(len(x) for x in fit.positions)
    rec_of = np.zeros(n_geo, np.int32)
    e_qm = np.zeros(n_geo)
    min_at = np.zeros(len(records), np.int64)
    f_qm = np.zeros(sum(len(x) * n * 3 for x, n in zip(fit.positions, fit.n_padded,
                                                        strict=True)))
    f_mask = np.zeros_like(f_qm)
    order = []
    for m, f in enumerate(fitted):
        ei = fit.energy_index(m)
        rec_of[ei] = m
        e_qm[ei] = f.energy
        if len(f.energy):
            min_at[m] = ei[int(np.argmin(f.energy))]
        fi = fit.force_index(m)
        f_qm[fi] = np.asarray(f.forces).ravel()
        f_mask[fi] = float(f.has_forces)
        order.append(ei)
        if with_forces:
            order.append(n_geo + fi)
    counts = np.maximum(np.bincount(rec_of, minlength=len(records)), 1)
    if reference == "mean":
        ref_qm = (np.bincount(rec_of, weights=e_qm, minlength=len(records)) / counts)[rec_of]
    else:
        ref_qm = e_qm[min_at][rec_of]
    static = {"rec_of": jnp.asarray(rec_of), "counts": jnp.asarray(counts, float),
              "min_at": jnp.asarray(min_at), "e_rel": jnp.asarray(e_qm - ref_qm),
              "f_qm": jnp.asarray(f_qm), "f_mask": jnp.asarray(f_mask),
              "order": jnp.asarray(np.concatenate(order) if order else np.zeros(0, int))}
    return every, fit, static


class EnergyForceTarget:
    """Relative energies and forces of QM records (one or more molecules).

    Args:
        ff: the ForceField whose theta is fitted.
        records: QMRecords (``load_qm_dataset``); each is one molecule.
        name: label for logs and reports.
        weight: overall weight w.
        energy_weight, force_weight: w_E and w_F inside the target (relative).
        energy_denominator: kJ/mol (default 1 kcal/mol).
        force_denominator: kJ/mol/nm (default 10 kcal/mol/A).
        reference: "mean" or "min" (the geometry of lowest QM energy).
        split: which geometries enter the loss ("train"; None for all).
        charges: charge model for create_system (e.g. "am1bcc").
    """

    kind = "energy_force"

    def __init__(self, ff, records: list[QMRecord], *, name: str = "energy_force",
                 weight: float = 1.0, energy_weight: float = 1.0, force_weight: float = 1.0,
                 energy_denominator: float = KCAL, force_denominator: float = 10 * KCAL_PER_A,
                 reference: str = "mean", split: str | None = "train", charges="am1bcc"):
        if reference not in ("mean", "min"):
            raise InputError(f"target {name!r}: reference must be 'mean' or 'min', got"
                             f" {reference!r}")
        if not records:
            raise InputError(f"target {name!r} has no records")
        for v, what in ((weight, "weight"), (energy_weight, "energy_weight"),
                        (force_weight, "force_weight")):
            if not np.isfinite(v) or v < 0:
                raise InputError(f"target {name!r}: {what} must be a finite number >= 0, got {v}")
        for v, what in ((energy_denominator, "energy_denominator"),
                        (force_denominator, "force_denominator")):
            if not np.isfinite(v) or v <= 0:
                raise InputError(f"target {name!r}: {what} must be > 0, got {v}")
        self.name, self.weight, self.reference, self.split = name, weight, reference, split
        self.energy_weight, self.force_weight = energy_weight, force_weight
        self.energy_denominator, self.force_denominator = energy_denominator, force_denominator
        self.records = [_Record(ff, r, charges) for r in records]
        fitted = [r.record.subset(split) for r in self.records]
        self._data = [(jnp.asarray(f.positions), jnp.asarray(f.energy), jnp.asarray(f.forces))
                      for f in fitted]
        self._every, self._fit, self._static = _layout(self.records, fitted, reference,
                                                       bool(force_weight))
        self.n_energy = sum(len(f.energy) for f in fitted)
        self.n_force = sum(f.forces.size for f in fitted if f.has_forces)
        if self.n_energy == 0:
            raise InputError(f"target {name!r}: no geometries in split {split!r}")
        self.residuals = jax.jit(self._residuals)

    def _reference(self, values, qm_energy):
        if self.reference == "mean":
            return values - jnp.mean(values)
        return values - values[jnp.argmin(qm_energy)]

    def _residuals(self, theta):
        se = jnp.sqrt(self.weight * self.energy_weight / self.n_energy) / self.energy_denominator
        sf = jnp.sqrt(self.weight * self.force_weight / max(self.n_force, 1)
                      ) / self.force_denominator
        if self._fit is not None:
            return self._batched_residuals(theta, se, sf)
        out = []
        for rec, (x, e_qm, f_qm) in zip(self.records, self._data, strict=True):
            u, g = rec.batch(x, theta)
            out.append(se * (self._reference(u, e_qm) - self._reference(e_qm, e_qm)))
            if self.force_weight:  # energy-only records: zero rows
                out.append(sf * float(rec.record.has_forces) * (-g - f_qm).ravel())
        return jnp.concatenate(out)

    def _batched_residuals(self, theta, se, sf):
        """The same rows in the same order, from one vmapped program per bucket."""
        per = self._fit.evaluate(theta)
        c = self._static
        u = jnp.concatenate([e for e, _ in per])
        if self.reference == "mean":
            ref = (jax.ops.segment_sum(u, c["rec_of"], num_segments=len(self.records))
                   / c["counts"])[c["rec_of"]]
        else:
            ref = u[c["min_at"]][c["rec_of"]]
        rows = [se * ((u - ref) - c["e_rel"])]
        if self.force_weight:
            grad = jnp.concatenate([g.reshape(-1) for _, g in per])
            rows.append(sf * c["f_mask"] * (-grad - c["f_qm"]))
        return jnp.concatenate(rows)[c["order"]]

    def _energies_forces(self, theta):
        """Per record (U [G], F [G, n, 3]) at all its geometries (host)."""
        if self._every is not None:
            return self._every.energies_forces(theta)
        return [rec.energies_forces(theta) for rec in self.records]

    def loss(self, theta):
        r = self.residuals(theta)
        return jnp.sum(r * r)

    def check_finite(self, theta):
        """Raise InputError naming the record and geometry whose MM energy or forces are not
        finite (call before fitting)."""
        for rec, (u, f) in zip(self.records, self._energies_forces(theta), strict=True):
            bad = ~np.isfinite(u) | ~np.all(np.isfinite(f.reshape(len(f), -1)), axis=1)
            if bad.any():
                raise InputError(f"target {self.name!r}: record {rec.record.id!r} geometry"
                                 f" {int(np.argmax(bad))} gives a non-finite MM energy or force")

    def metrics(self, theta) -> dict:
        """RMSE of relative energies (kJ/mol) and forces (kJ/mol/nm) per split, over records."""
        out = {}
        for split in ("train", "test"):
            de, df = [], []
            for rec, (u, f) in zip(self.records, self._energies_forces(theta), strict=True):
                keep = rec.record.split == split
                if not keep.any():
                    continue
                qm = rec.record
                # relative energies over the split's own geometries, with this target's rule
                qe = qm.energy[keep]
                de.append(_relative(u[keep], qe, self.reference)
                          - _relative(qe, qe, self.reference))
                if qm.has_forces:
                    df.append((f[keep] - qm.forces[keep]).ravel())
            if de:
                de = np.concatenate(de)
                df = np.concatenate(df) if df else None
                out[split] = {"energy_rmse": float(np.sqrt(np.mean(de ** 2))),
                              "force_rmse": None if df is None
                              else float(np.sqrt(np.mean(df ** 2))),
                              "n_geometries": int(de.size)}
        return out

    def predictions(self, theta) -> list[dict]:
        """Per record: split, relative QM and MM energies, QM and MM forces (for reports)."""
        out = []
        for rec, (u, f) in zip(self.records, self._energies_forces(theta), strict=True):
            qm = rec.record
            out.append({"id": qm.id, "kind": qm.kind, "split": qm.split,
                        "angles_deg": qm.angles_deg,
                        "qm_energy": _relative(qm.energy, qm.energy, self.reference),
                        "mm_energy": _relative(u, qm.energy, self.reference),
                        "qm_forces": qm.forces, "mm_forces": f, "has_forces": qm.has_forces})
        return out


def _relative(values, qm_energy, reference):
    """values minus their mean, or minus their value at the QM minimum (NumPy)."""
    if reference == "mean":
        return values - values.mean()
    return values - values[np.argmin(qm_energy)]


class TorsionProfileTarget(EnergyForceTarget):
    """Torsion-scan energies relative to the QM minimum (forces off by default).

    ``relaxation="restrained"`` (ForceBalance's torsion-profile target): at every scan point
    the MM structure is minimized from the QM geometry with the scanned dihedral held by a
    stiff harmonic restraint (``restraint_k`` kJ/mol/rad^2 on the wrapped angle difference,
    to an RMS force of ``tolerance``), and the MM energy at that minimum (restraint
    excluded) enters the residual; its gradient flows through the minimization by implicit
    differentiation (``gradients.implicit.implicit_argmin``: one linear solve, no unrolled
    minimizer). ``relaxation="none"`` evaluates MM at the QM geometries (single points)."""

    kind = "torsion_profile"

    def __init__(self, ff, records, *, name="torsion_profile", force_weight=0.0,
                 reference="min", relaxation: str = "none", restraint_k: float = 1e4,
                 tolerance: float = 1e-4, **kw):
        not_scans = [r.id for r in records if r.angles_deg is None or r.dihedral is None]
        if not_scans:
            raise InputError(f"target {name!r}: record {not_scans[0]!r} is not a torsion scan"
                             " (no dihedral and angles); use an energy_force target for it")
        if relaxation not in ("none", "restrained"):
            raise InputError(f"target {name!r}: relaxation must be 'none' or 'restrained',"
                             f" got {relaxation!r}")
        if relaxation == "restrained" and force_weight:
            raise InputError(f"target {name!r}: restrained relaxation compares energies only;"
                             " set force_weight = 0")
        if not (np.isfinite(restraint_k) and restraint_k > 0 and np.isfinite(tolerance)
                and tolerance > 0):
            raise InputError(f"target {name!r}: restraint_k and tolerance must be > 0")
        super().__init__(ff, records, name=name, force_weight=force_weight,
                         reference=reference, **kw)
        self.relaxation = relaxation
        # the restrained minimum is a custom VJP: its Jacobians by jax.jacrev
        self.reverse_only = relaxation == "restrained"
        if relaxation == "restrained":
            self._relaxed = [self._relaxer(rec, restraint_k, tolerance) for rec in self.records]
            self.residuals = jax.jit(self._relaxed_residuals)
            self._relaxed_energies = jax.jit(self._all_relaxed)

    def _relaxer(self, rec, restraint_k, tolerance):
        """theta -> (MM energies [n], relaxed positions [n, N, 3]) of one record's scan points
        (each split's points; pure, implicit gradient)."""
        from chronograd.gradients.implicit import implicit_argmin, rigid_modes
        from chronograd.potentials.geometry import dihedral_angles

        U = rec.system.energy_fn()
        dihedral = np.asarray([rec.record.dihedral])
        targets = jnp.asarray(np.deg2rad(rec.record.angles_deg))

        def restrained(x, p):
            theta, phi0 = p
            d = dihedral_angles(x, None, dihedral)[0] - phi0
            d = jnp.arctan2(jnp.sin(d), jnp.cos(d))
            return U(x, None, theta) + 0.5 * restraint_k * d * d

        x_star = implicit_argmin(restrained, null_modes=lambda x: rigid_modes(x, False),
                                 tolerance=tolerance)
        starts = jnp.asarray(rec.record.positions)

        def relaxed(theta):
            xs = jax.vmap(lambda x0, phi0: x_star((theta, phi0), x0))(starts, targets)
            return jax.vmap(lambda x: U(x, None, theta))(xs), xs

        return relaxed

    def _all_relaxed(self, theta):
        return [relax(theta) for relax in self._relaxed]

    def _relaxed_residuals(self, theta):
        se = jnp.sqrt(self.weight * self.energy_weight / self.n_energy) / self.energy_denominator
        out = []
        for rec, relax in zip(self.records, self._relaxed, strict=True):
            u, _ = relax(theta)
            keep = (rec.record.split == self.split) if self.split else np.ones(len(u), bool)
            u, e_qm = u[np.flatnonzero(keep)], jnp.asarray(rec.record.energy[keep])
            out.append(se * (self._reference(u, e_qm) - self._reference(e_qm, e_qm)))
        return jnp.concatenate(out)

    def metrics(self, theta) -> dict:
        out = super().metrics(theta)
        if self.relaxation == "restrained":  # MM forces at relaxed geometries: not comparable
            for m in out.values():
                m["force_rmse"] = None
        return out

    def predictions(self, theta) -> list[dict]:
        out = super().predictions(theta)
        if self.relaxation == "restrained":
            for p in out:
                p["has_forces"] = False
        return out

    def _energies_forces(self, theta):
        if self.relaxation == "none":
            return super()._energies_forces(theta)
        out = []
        for rec, (u, xs) in zip(self.records, self._relaxed_energies(theta), strict=True):
            out.append((np.asarray(u), rec.energies_forces(theta, xs)[1]))
        return out


class OptimizedGeometryTarget:
    """Bond lengths and angles of MM minima against QM-optimized geometries.

    Each record's QM minimum is the start of an MM minimization (L-BFGS to an RMS force of
    ``tolerance``) whose result x*(theta) is differentiated implicitly
    (``chronograd.gradients.minimized_positions``); residual rows are
    sqrt(w / n_b) (b_mm - b_qm) / bond_denominator and sqrt(w / n_a) (a_mm - a_qm) /
    angle_denominator over all bonds and angles (ForceBalance's denominators: 0.05 A, 8 deg).
    """

    kind = "optimized_geometry"
    reverse_only = True  # the implicit derivative is a custom VJP: Jacobians by jax.jacrev

    def __init__(self, ff, records: list[QMRecord], *, name: str = "optimized_geometry",
                 weight: float = 1.0, bond_denominator: float = 0.005,
                 angle_denominator: float = np.deg2rad(8.0), tolerance: float = 1e-3,
                 split: str | None = "train", charges="am1bcc"):
        if not records:
            raise InputError(f"target {name!r} has no records")
        self.name, self.weight, self.split = name, weight, split
        self.bond_denominator, self.angle_denominator = bond_denominator, angle_denominator
        self.records, self._items, systems, starts = [], [], [], []
        for r in records:
            rec = _Record(ff, r, charges)
            self.records.append(rec)
            for k in np.flatnonzero(r.split == split) if split else range(len(r.energy)):
                systems.append(rec.system)
                starts.append(np.asarray(r.positions[k]))
                self._items.append((r.id, int(k), r.molecule.bonds(), r.molecule.angles(),
                                    jnp.asarray(r.positions[k])))
        if not self._items:
            raise InputError(f"target {name!r}: no geometries in split {split!r}")
        self._minima = self._minimizer(systems, starts, tolerance)
        self.n_bonds = sum(len(i[2]) for i in self._items)
        self.n_angles = sum(len(i[3]) for i in self._items)
        self.residuals = jax.jit(self._residuals)
        self._deviations = jax.jit(self._deviation_rows)  # for metrics and checks

    def _minimizer(self, systems, starts, tolerance):
        """theta -> the MM minimum of every item: all of them from one vmapped minimization
        per size bucket, or (systems that cannot share a batch) one by one."""
        from chronograd.gradients.implicit import batched_minimized_positions, minimized_positions
        from chronograd.system.batch import stack_systems

        names = [f"{rid} geometry {k}" for rid, k, *_ in self._items]
        try:
            batch = stack_systems(systems, names=names)
        except InputError:
            stars = [minimized_positions(s, x, tolerance=tolerance)
                     for s, x in zip(systems, starts, strict=True)]
            return lambda theta: [x_star(theta) for x_star in stars]
        x_star = batched_minimized_positions(batch, starts, tolerance=tolerance)
        where = [None] * len(systems)
        for b, bucket in enumerate(batch.buckets):
            for row, m in enumerate(bucket.members):
                where[m] = (b, row, int(bucket.n_atoms[row]))

        def minima(theta):
            xs = x_star(theta)
            return [xs[b][row, :n] for b, row, n in where]

        return minima

    @staticmethod
    def _internal(x, bonds, angles):
        return bond_lengths(x, None, bonds), bond_angles(x, None, angles)

    def _deviation_rows(self, theta):
        """Per item (MM minimum, bond deviations nm, angle deviations rad) (pure)."""
        out = []
        for x_mm, (_, _, bonds, angles, x_qm) in zip(self._minima(theta), self._items,
                                                       strict=True):
            b_mm, a_mm = self._internal(x_mm, bonds, angles)
            b_qm, a_qm = self._internal(x_qm, bonds, angles)
            out.append((x_mm, b_mm - b_qm, a_mm - a_qm))
        return out

    def _residuals(self, theta):
        sb = jnp.sqrt(self.weight / self.n_bonds) / self.bond_denominator
        sa = jnp.sqrt(self.weight / max(self.n_angles, 1)) / self.angle_denominator
        out = []
        for _, db, da in self._deviation_rows(theta):
            out += [sb * db, sa * da]
        return jnp.concatenate(out)

    def loss(self, theta):
        r = self.residuals(theta)
        return jnp.sum(r * r)

    def check_finite(self, theta):
        for (rid, k, *_), (x_mm, _, _) in zip(self._items, self._deviations(theta),
                                              strict=True):
            if not np.all(np.isfinite(np.asarray(x_mm))):
                raise InputError(f"target {self.name!r}: the MM minimization of record {rid!r}"
                                 f" geometry {k} gives non-finite positions")

    def metrics(self, theta) -> dict:
        """RMS bond-length (nm) and angle (deg) deviation of the MM minima from QM."""
        rows = self._deviations(theta)
        db = np.concatenate([np.asarray(d) for _, d, _ in rows])
        da = np.rad2deg(np.concatenate([np.asarray(d) for _, _, d in rows]))
        return {self.split or "all": {"bond_rmse": float(np.sqrt(np.mean(db ** 2))),
                                      "angle_rmse_deg": float(np.sqrt(np.mean(da ** 2))),
                                      "n_geometries": len(self._items)}}

    def predictions(self, theta) -> list[dict]:
        return []


TARGETS = {"energy_force": EnergyForceTarget, "torsion_profile": TorsionProfileTarget,
           "optimized_geometry": OptimizedGeometryTarget}
