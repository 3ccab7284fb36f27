"""ForceField: a SMIRNOFF force field as a differentiable parameter pytree theta.

    ff = ForceField("openff-2.2.1.offxml")        # bare names resolve from openforcefields
    system = ff.create_system(molecules)            # charges as the force field says
    U = system.energy_fn()                         # U(positions, box, theta)
    dU_dtheta = jax.grad(U, argnums=2)(x, None, ff.params)
    ff.to_offxml("fitted.offxml", new_theta)
"""

from __future__ import annotations

import re

import numpy as np

from chronograd.errors import InputError
from chronograd.forcefield.offxml import read_offxml, write_offxml
from chronograd.forcefield.theta import build_theta

# Internal units of each theta attribute (nm, rad, kJ/mol, e).
PARAMETER_UNITS = {
    ("Bonds", "length"): "nm", ("Bonds", "k"): "kJ/mol/nm^2", ("Angles", "angle"): "rad",
    ("Angles", "k"): "kJ/mol/rad^2", ("ProperTorsions", "k"): "kJ/mol",
    ("ProperTorsions", "phase"): "rad", ("ImproperTorsions", "k"): "kJ/mol",
    ("ImproperTorsions", "phase"): "rad", ("vdW", "epsilon"): "kJ/mol", ("vdW", "sigma"): "nm",
    ("vdW", "rmin_half"): "nm", ("LibraryCharges", "charge"): "e",
    ("ChargeIncrementModel", "charge_increment"): "e", ("Constraints", "distance"): "nm",
}


class ForceField:
    """A SMIRNOFF force field: the parsed file, theta (``params``) and its row metadata."""

    def __init__(self, *names_or_paths):
        """One ``.offxml`` (a path, or a bare name from the openforcefields package), or
        several combined as the OpenFF toolkit combines them (later files' parameters win),
        e.g. ``ForceField("openff-2.2.1.offxml", "tip4p_ew.offxml")``."""
        self.file = read_offxml(*names_or_paths)
        self.params, self.row_info = build_theta(self.file)

    @property
    def source_name(self) -> str:
        return self.file.source

    def create_system(self, molecules, *, charges: str | None = None, box=None):
        """Type ``molecules`` (a Molecule or list; copies typed once) into a System whose
        ``params`` are this force field's theta. See ``create_system``."""
        from chronograd.forcefield.create_system import create_system

        return create_system(self, molecules, charges=charges, box=box)

    def parameter_table(self, params=None, *, gradient=None, prior_widths=None) -> list[dict]:
        """One dict per row of theta: handler, attribute, id, smirks, file_attribute, value
        and unit (internal units). With ``gradient`` (a pytree like theta, e.g. dU/dtheta or
        dL/dtheta) each row gains ``gradient``, and with ``prior_widths`` ({"Bonds.k": width,
        ...}, default the fit's Sage-like widths) also ``scaled_sensitivity`` = gradient x
        prior width: the change of the quantity per prior-width change of the parameter,
        which ranks parameters of different units on one scale."""
        from chronograd.fit.objective import DEFAULT_PRIORS

        params = self.params if params is None else params
        widths = dict(DEFAULT_PRIORS, **(prior_widths or {}))
        out = []
        for handler, attrs in self.row_info.items():
            for attr, info in attrs.items():
                values = np.asarray(params[handler][attr])
                g = None if gradient is None else np.asarray(gradient[handler][attr])
                for pos, pid in enumerate(info.ids):
                    row = {"handler": handler, "attribute": attr, "id": pid,
                           "smirks": info.smirks[pos] if pos < len(info.smirks) else "",
                           "file_attribute": info.file_attribute[pos],
                           "value": float(values[pos]),
                           "unit": PARAMETER_UNITS.get((handler, attr), "")}
                    if g is not None:
                        row["gradient"] = float(g[pos])
                        width = widths.get(f"{handler}.{attr}")
                        row["scaled_sensitivity"] = (None if width is None
                                                     else float(g[pos]) * float(width))
                    out.append(row)
        return out

    def select(self, *, ids=None, smirks=None, attributes=None):
        """A boolean mask pytree like theta: True for rows whose parameter id is in ``ids``
        (or matches the regular expression ``smirks``) and whose attribute is in
        ``attributes`` (e.g. ``{"k", "phase"}``). Omitted criteria match everything."""
        import jax.numpy as jnp

        mask = {}
        for handler, attrs in self.row_info.items():
            mask[handler] = {}
            for attr, info in attrs.items():
                keep = np.ones(len(info.ids), bool)
                if ids is not None:
                    keep &= np.isin(info.ids, list(ids))
                if smirks is not None:
                    keep &= np.array([re.search(smirks, s) is not None for s in info.smirks])
                if attributes is not None:
                    keep &= attr in attributes
                mask[handler][attr] = jnp.asarray(keep)
        return mask

    def instances(self, systems) -> dict[tuple[str, str], list[tuple[str, tuple[int, ...]]]]:
        """Where each parameter is used: {(handler, parameter id): [(term, atom tuple), ...]}
        over ``systems`` (one System or a list) made from this force field. Atom tuples are
        the system's atom indices; per-atom terms (charges, vdW) give 1-tuples; virtual-site
        geometry gives the site's orientation atoms."""
        from chronograd.system.source import slot_entries, theta_offsets

        if not isinstance(systems, (list, tuple)):
            systems = [systems]
        offsets = theta_offsets(self.params)
        owner = {}  # flat row -> (handler, parameter id)
        for (handler, attr), start in offsets.items():
            for pos, pid in enumerate(self.row_info[handler][attr].ids):
                owner[start + pos] = (handler, pid)
        out: dict[tuple[str, str], set] = {}
        for system in systems:
            atoms_of = {t.name: getattr(t, "atoms", None) for t in system.terms}
            atoms_of.update({vs.name: vs.parents for vs in system.virtual_sites if vs.name})
            for term, _attr, slot, row in slot_entries(system.source):
                atoms = atoms_of.get(term)
                where = (slot,) if atoms is None else tuple(int(a) for a in atoms[slot])
                out.setdefault(owner[row], set()).add((term, where))
        return {k: sorted(v) for k, v in out.items()}

    def unused_parameters(self, systems) -> list[tuple[str, str]]:
        """(handler, parameter id) of every parameter that no system in ``systems`` uses."""
        used = set(self.instances(systems))
        every = {(h, pid) for h, attrs in self.row_info.items() for info in attrs.values()
                 for pid in info.ids}
        return sorted(every - used)

    def to_offxml(self, path, params=None) -> None:
        """Write the force field with ``params`` (default: its own), in the file's units, with
        everything else unchanged; written to a temporary file first, then moved."""
        params = self.params if params is None else params
        values = {}
        for row in self.parameter_table(params):
            handler, pid, file_attr, value = (row["handler"], row["id"], row["file_attribute"],
                                              row["value"])
            if not np.isfinite(value):
                raise InputError(f"{handler} {pid} {file_attr} is not finite ({value})")
            values[(handler, pid, file_attr)] = value
        write_offxml(self.file, path, values)
