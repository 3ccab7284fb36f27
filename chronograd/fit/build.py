"""Building a fit from its configuration: the force field, the targets and the objective.

Used by the fit loop (``runner.py``) and by Dask workers (``parallel.py``), which rebuild one
target over given parameters; neither imports the other.
"""

from __future__ import annotations

import numpy as np

from chronograd import units
from chronograd.errors import InputError
from chronograd.forcefield.quantity import parse_quantity, unit_factor


def _records_for(cfg, i, t):
    from chronograd.fit.data import list_records, load_qm_dataset

    dataset = cfg.resolve(t["dataset"])
    try:
        known = list_records(dataset)
    except InputError as e:
        raise cfg.error("targets", "dataset", i, str(e)) from None
    if "records" in t:
        ids = t["records"]
        missing = [r for r in ids if r not in known]
        if missing:
            raise cfg.error("targets", "records", i, f"no record {missing[0]!r} in {dataset};"
                            f" records are {', '.join(known)}")
    else:
        kinds = set(t["kinds"])
        ids = [r for r, kind in known.items() if kind in kinds]
        if not ids:
            raise cfg.error("targets", "kinds", i, f"no records of kinds {sorted(kinds)} in"
                            f" {dataset}; kinds there: {sorted(set(known.values()))}")
    return load_qm_dataset(dataset, records=ids)


def build_target(cfg, i, ff):
    from chronograd.fit.targets import TARGETS

    t = cfg.targets[i]
    if t["type"] == "liquid":
        return _liquid_target(cfg, i, t, ff)
    if t["type"] not in TARGETS:
        raise cfg.error("targets", "type", i, f"unknown target type {t['type']!r}; choose"
                        f" one of {', '.join([*TARGETS, 'liquid'])}")
    kw = {k: t[k] for k in ("weight", "energy_weight", "force_weight", "reference",
                            "tolerance", "relaxation", "restraint_k") if k in t}
    for k in ("energy_denominator", "force_denominator", "bond_denominator",
              "angle_denominator"):
        if k in t:
            kw[k] = cfg.quantity("targets", k, i, t[k])
    import inspect

    accepted = inspect.signature(TARGETS[t["type"]].__init__).parameters
    for k in kw:
        if k not in accepted and "kw" not in accepted:
            raise cfg.error("targets", k, i, f"not an option of {t['type']!r} targets")
    if "split" in t:
        kw["split"] = None if t["split"] == "all" else t["split"]
    records = _records_for(cfg, i, t)
    if cfg.forcefield.get("charges", "am1bcc") == "am1bcc":
        from chronograd.forcefield.charges import prefetch_am1bcc

        prefetch_am1bcc([r.molecule for r in records])  # one antechamber run per CPU
    try:
        return TARGETS[t["type"]](ff, records, name=t["name"],
                                  charges=cfg.forcefield.get("charges", "am1bcc"), **kw)
    except InputError as e:
        raise cfg.error("targets", index=i, message=str(e)) from None


def _liquid_target(cfg, i, t, ff):
    import inspect

    from chronograd.fit.liquid import LiquidTarget

    options = {k: v for k, v in t.items() if k not in ("name", "type")}
    accepted = inspect.signature(LiquidTarget.__init__).parameters
    extra = [k for k in options if k not in accepted or k in ("ff", "charges")]
    if extra:
        raise cfg.error("targets", extra[0], i, "not an option of 'liquid' targets")
    references = {}
    for key in ("density", "hvap"):
        if key in options:
            options[key], references[key] = _experimental(cfg, i, key, options[key])
    if references:
        options["references"] = references
    try:
        return LiquidTarget(ff, name=t["name"], charges=cfg.forcefield.get("charges"),
                            **options)
    except InputError as e:
        raise cfg.error("targets", index=i, message=str(e)) from None


_EXPERIMENTAL = {"density": (units.DENSITY, "gram/milliliter", "0.99705 * g/mL"),
                 "hvap": (units.MOLAR_ENERGY, "kilojoule_per_mole", "43.98 * kJ/mol")}


def _experimental(cfg, i, key, entry):
    """(value in the target's units, reference) of an experimental value written as
    ``key = {value = "<number> * <units>", reference = "<source>"}``."""
    dims, unit, example = _EXPERIMENTAL[key]
    fix = f'write {key} = {{value = "{example}", reference = "<where the number comes from>"}}'
    if not isinstance(entry, dict):
        raise cfg.error("targets", key, i, f"an experimental value needs its units and a"
                        f" reference; {fix}")
    extra = sorted(set(entry) - {"value", "reference"})
    if extra:
        raise cfg.error("targets", key, i, f"unknown key {extra[0]!r}; {fix}")
    reference = entry.get("reference")
    if not isinstance(reference, str) or not reference.strip():
        raise cfg.error("targets", key, i, f"no reference for the experimental value; {fix}")
    if not isinstance(entry.get("value"), str):
        raise cfg.error("targets", key, i, f"the value needs units; {fix}")
    try:
        value = parse_quantity(entry["value"], dims)[0] / unit_factor(unit)
    except InputError as e:
        raise cfg.error("targets", key, i, f"{e}; {fix}") from None
    return value, reference.strip()


def build_objective(cfg, *, only_target: int | None = None, indices=None):
    """(ForceField, Objective) for a config; ``only_target``/``indices`` build one target over
    given flat indices (what a Dask worker does)."""
    from chronograd.fit.objective import Objective, select_parameters
    from chronograd.forcefield import ForceField

    try:
        ff = ForceField(_ff_path(cfg))
    except InputError as e:
        raise cfg.error("forcefield", "file", message=str(e)) from None
    which = range(len(cfg.targets)) if only_target is None else [only_target]
    targets = [build_target(cfg, i, ff) for i in which]
    if indices is None:
        for i, sel in enumerate(cfg.parameters):
            try:
                ff.select(ids=sel.get("ids"), smirks=sel.get("smirks"),
                          attributes=sel.get("attributes"))
            except Exception as e:  # e.g. a bad regular expression
                raise cfg.error("parameters", index=i, message=str(e)) from None
        try:
            wrt = select_parameters(ff, cfg.parameters)
        except InputError as e:
            raise cfg.error("parameters", message=str(e)) from None
        used_only = cfg.objective.get("used_only", True)
    else:
        wrt, used_only = np.asarray(indices), False
    try:
        obj = Objective(ff, targets, wrt, priors=cfg.priors,
                        prior_weight=cfg.objective.get("prior_weight", 1.0), used_only=used_only)
    except InputError as e:
        raise cfg.error("priors" if "prior" in str(e) else "parameters", message=str(e)) from None
    return ff, obj


def _ff_path(cfg):
    name = cfg.forcefield["file"]
    local = cfg.resolve(name)
    return str(local) if local.exists() else name
