"""The slot map: which force-field parameters fill which system slots, with which factor.

Every slot of a system parameter array is ``constant[s] + sum_k factor[k] * theta_flat[row[k]]``
over the COO entries ``k`` with ``slot[k] == s``. ``theta_flat`` is the force field's parameter
pytree flattened (``jax.flatten_util.ravel_pytree``). The map is applied inside the traced
energy function, so ``jax.grad`` reaches theta; ``J v`` and ``J^T w`` are segment sums, and the
dense Jacobian is never formed. A SlotMap is a pytree (COO arrays are data, ``n_slots`` is
static), so slot maps are inputs of compiled functions and can be padded (entries with factor 0)
and stacked for batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True, eq=False)
class SlotMap:
    """A sparse linear map from flat theta to one system parameter array of ``n_slots``.

    Attributes:
        n_slots: number of slots (e.g. atoms for charges, bonds for bond lengths).
        slot, row: [K] int COO entries; factor: [K] float.
        constant: [n_slots] float added to every slot (frozen contributions, e.g. AM1-BCC
            base charges); zeros when every slot comes from theta.
    """

    n_slots: int
    slot: np.ndarray
    row: np.ndarray
    factor: np.ndarray
    constant: np.ndarray

    @classmethod
    def gather(cls, rows, factors=None, constant=None) -> SlotMap:
        """One theta row per slot (the common case), optionally scaled."""
        rows = np.asarray(rows, np.int64)
        n = rows.shape[0]
        factors = np.ones(n) if factors is None else np.asarray(factors, np.float64)
        constant = np.zeros(n) if constant is None else np.asarray(constant, np.float64)
        return cls(n, np.arange(n, dtype=np.int64), rows, factors, constant)

    def apply(self, theta_flat):
        """Slot values [n_slots] from flat theta (traced; differentiable)."""
        contrib = jnp.asarray(self.factor, theta_flat.dtype) * theta_flat[self.row]
        summed = jax.ops.segment_sum(contrib, jnp.asarray(self.slot), num_segments=self.n_slots)
        return jnp.asarray(self.constant, theta_flat.dtype) + summed

    def apply_host(self, theta_flat: np.ndarray) -> np.ndarray:
        """The same as ``apply`` in NumPy, for setup-time values (no tracing, no compiling)."""
        out = self.constant.copy()
        np.add.at(out, self.slot, self.factor * np.asarray(theta_flat)[self.row])
        return out

    def jvp(self, v_flat):
        """J v: the change of every slot along a flat theta direction ``v``."""
        contrib = jnp.asarray(self.factor, v_flat.dtype) * v_flat[self.row]
        return jax.ops.segment_sum(contrib, jnp.asarray(self.slot), num_segments=self.n_slots)

    def vjp(self, w, n_theta: int):
        """J^T w: pulls a per-slot cotangent ``w`` back to flat theta (length ``n_theta``)."""
        contrib = jnp.asarray(self.factor, w.dtype) * w[self.slot]
        return jnp.zeros(n_theta, w.dtype).at[self.row].add(contrib)

    def instances(self) -> dict[int, np.ndarray]:
        """For every used theta row, the slots it fills."""
        out: dict[int, list[int]] = {}
        for s, r in zip(self.slot.tolist(), self.row.tolist(), strict=True):
            out.setdefault(r, []).append(s)
        return {r: np.asarray(v) for r, v in out.items()}

    @staticmethod
    def concatenate(maps: list[SlotMap]) -> SlotMap:
        """Stack maps of consecutive slot blocks (e.g. molecules of a topology)."""
        offsets = np.cumsum([0] + [m.n_slots for m in maps])
        return SlotMap(
            int(offsets[-1]),
            np.concatenate([m.slot + o for m, o in zip(maps, offsets, strict=False)]),
            np.concatenate([m.row for m in maps]),
            np.concatenate([m.factor for m in maps]),
            np.concatenate([m.constant for m in maps]),
        )


jax.tree_util.register_dataclass(SlotMap, data_fields=["slot", "row", "factor", "constant"],
                                 meta_fields=["n_slots"])
