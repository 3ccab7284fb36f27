"""``chronograd fit`` configuration: a TOML file, checked with errors that name key and line.

    [forcefield]
    file = "openff_unconstrained-2.2.1.offxml"   # a packaged name or a path
    charges = "am1bcc"

    [[parameters]]                 # union of selections; each: handler, ids, smirks, attributes
    handler = "ProperTorsions"
    attributes = ["k"]

    [priors]                       # widths (quantities); defaults follow OpenFF's Sage fits
    "ProperTorsions.k" = "1.0 * kilocalorie_per_mole"

    [objective]
    prior_weight = 1.0

    [[targets]]
    name = "torsions"
    type = "torsion_profile"      # energy_force | torsion_profile | optimized_geometry | liquid
    dataset = "../data/qm"         # relative to this file
    records = ["scan-ethanol"]     # or kinds = ["torsion_scan"]
    weight = 1.0

    [optimizer]
    method = "lbfgs"               # adam | lbfgs | levenberg-marquardt | neuroevolution
    iterations = 20                # at most; the fit stops earlier when converged:
    loss_tolerance = 1e-6          #   relative objective change, `patience` times in a row
    gradient_tolerance = 1e-6      #   gradient norm (phi: prior-width units)
    step_tolerance = 1e-8          #   step norm (phi)

    [output]
    directory = "fit-out"          # relative to this file
    checkpoint_every = 1

    [parallel]
    cluster = "none"               # none | local | slurm | pbs | a scheduler address
    workers = 2
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from chronograd import units
from chronograd.errors import InputError
from chronograd.forcefield.quantity import expected_dimension, parse_quantity

_SCHEMA = {
    "forcefield": {"file": str, "charges": str},
    "parameters": {"handler": str, "ids": list, "smirks": str, "attributes": list},
    "priors": None,  # free keys "Handler.attribute" = quantity
    "objective": {"prior_weight": (int, float), "used_only": bool},
    "targets": {"name": str, "type": str, "dataset": str, "records": list, "kinds": list,
                "weight": (int, float), "energy_weight": (int, float),
                "force_weight": (int, float), "energy_denominator": str,
                "force_denominator": str, "reference": str, "split": str,
                "bond_denominator": str, "angle_denominator": str, "tolerance": (int, float),
                # type = "torsion_profile": "none" (single points) | "restrained"
                "relaxation": str, "restraint_k": (int, float),
                # type = "liquid": experimental density and hvap as tables {value = quantity,
                # reference = source}; plain numbers for the rest (K, bar, g/mL, kJ/mol, ps,
                # 1/ps, steps)
                "smiles": str, "n_molecules": int, "temperature": (int, float),
                "pressure": (int, float), "density": (int, float, dict),
                "hvap": (int, float, dict),
                "density_denominator": (int, float), "hvap_denominator": (int, float),
                "timestep": (int, float), "friction": (int, float), "equilibration": int,
                "production": int, "every": int, "gas_production": int, "gas_every": int,
                "min_ess": (int, float), "seed": int, "initial_density": (int, float),
                "density_std_error": (int, float), "hvap_std_error": (int, float),
                "max_production": int, "validation_production": int,
                "min_effective_samples": (int, float), "pool": int, "precision": str},
    "optimizer": {"method": str, "iterations": int, "learning_rate": (int, float),
                  "memory_size": int, "damping": (int, float), "mutation_scale": (int, float),
                  "temperature": (int, float), "seed": int,
                  # convergence (fit/runner.py): any criterion met stops the fit
                  "loss_tolerance": (int, float), "gradient_tolerance": (int, float),
                  "step_tolerance": (int, float), "patience": int},
    "output": {"directory": str, "checkpoint_every": int, "report": bool},
    "parallel": {"cluster": str, "workers": int, "jobqueue": dict},
}
# Dimensions of the quantity-valued target options.
_DIMENSIONS = {
    "energy_denominator": units.MOLAR_ENERGY,
    "force_denominator": units.dimension_product((units.MOLAR_ENERGY, 1), (units.LENGTH, -1)),
    "bond_denominator": units.LENGTH, "angle_denominator": units.ANGLE,
}
_REQUIRED = {"forcefield": ["file"], "targets": ["type"], "optimizer": ["method"],
             "output": ["directory"]}
_ARRAYS = {"parameters", "targets"}


@dataclass
class FitConfig:
    path: Path
    text: str
    data: dict
    forcefield: dict = field(default_factory=dict)
    parameters: list = field(default_factory=list)
    priors: dict = field(default_factory=dict)
    objective: dict = field(default_factory=dict)
    targets: list = field(default_factory=list)
    optimizer: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)
    parallel: dict = field(default_factory=dict)

    def line_of(self, table: str, key: str | None = None, index: int | None = None) -> int | None:
        return _line_of(self.text, table, key, index)

    def error(self, table, key=None, index=None, message=""):
        line = self.line_of(table, key, index)
        where = f"[[{table}]] #{index + 1}" if index is not None else f"[{table}]"
        name = f"{where} {key}" if key else where
        at = f", line {line}" if line else ""
        return InputError(f"{self.path}{at}: {name}: {message}")

    def resolve(self, relative: str) -> Path:
        return (self.path.parent / relative).resolve()

    def quantity(self, table, key, index=None, value=None):
        """A quantity in internal units, checked for the dimension the key needs."""
        expected = _DIMENSIONS.get(key)
        if table == "priors":
            handler, _, attribute = key.partition(".")
            expected = expected_dimension(handler, attribute)
            if expected is None:
                raise self.error(table, key, index, "not a \"Handler.attribute\" of a fitted"
                                 " parameter (e.g. \"ProperTorsions.k\", \"Bonds.length\")")
        try:
            width = parse_quantity(value, expected)[0]
            if table == "priors" and not width > 0:
                raise InputError(f"a prior width must be positive, got {value!r}")
            return width
        except InputError as e:
            raise self.error(table, key, index, f"{e} (write e.g. \"1.0 * kilocalorie_per_mole\")"
                             ) from None


def _line_of(text, table, key=None, index=None):
    """1-based line of ``key`` in ``[table]`` (the index-th ``[[table]]``), or of the header."""
    current, count, header_line = None, -1, None
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        m = re.match(r"^\[\[\s*([^\]]+?)\s*\]\]", s) or re.match(r"^\[\s*([^\]]+?)\s*\]", s)
        if m:
            current = m.group(1).strip().strip('"')
            if current == table:
                count += 1
                if index is None or count == index:
                    header_line = n
            continue
        if current == table and (index is None or count == index) and key is not None:
            k = re.match(r'^("?)([^"=]+?)\1\s*=', s)
            if k and k.group(2).strip() == key:
                return n
    return header_line


def read_toml(path) -> tuple[Path, str, dict]:
    """(path, text, parsed tables) of a TOML config; InputError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML: {e}") from None
    return path, text, data


def load_config(path) -> FitConfig:
    path, text, data = read_toml(path)
    cfg = FitConfig(path.resolve(), text, data)
    for table, value in data.items():
        if table not in _SCHEMA:
            raise cfg.error(table, message=f"unknown table; known: {', '.join(_SCHEMA)}")
        entries = value if table in _ARRAYS else [value]
        if table in _ARRAYS and not isinstance(value, list):
            raise cfg.error(table, message=f"write it as an array of tables, [[{table}]]")
        for i, entry in enumerate(entries):
            index = i if table in _ARRAYS else None
            if not isinstance(entry, dict):
                raise cfg.error(table, index=index, message="expected a table")
            schema = _SCHEMA[table]
            for key, v in entry.items():
                if schema is None:
                    if not isinstance(v, str):
                        raise cfg.error(table, key, index, "expected a quantity string such as"
                                        " \"1.0 * kilocalorie_per_mole\"")
                    continue
                if key not in schema:
                    raise cfg.error(table, key, index, f"unknown key; known keys:"
                                    f" {', '.join(schema)}")
                if not isinstance(v, schema[key]) or (schema[key] is int and isinstance(v, bool)):
                    want = schema[key].__name__ if isinstance(schema[key], type) else "number"
                    raise cfg.error(table, key, index, f"expected {want}, got {v!r}")
            for key in _REQUIRED.get(table, []):
                if key not in entry:
                    raise cfg.error(table, index=index, message=f"missing required key {key!r}")
    for table in ("forcefield", "targets", "optimizer", "output"):
        if table not in data:
            raise InputError(f"{path}: missing [{'[' if table in _ARRAYS else ''}{table}"
                             f"{']' if table in _ARRAYS else ''}] table")
    cfg.forcefield = data["forcefield"]
    cfg.parameters = data.get("parameters", [])
    if not cfg.parameters:
        raise InputError(f"{path}: no [[parameters]] selection; say which parameters to train")
    cfg.priors = {k: cfg.quantity("priors", k, value=v)
                  for k, v in data.get("priors", {}).items()}
    cfg.objective = data.get("objective", {})
    cfg.targets = data["targets"]
    names = [t.get("name", f"target{i}") for i, t in enumerate(cfg.targets)]
    for i, t in enumerate(cfg.targets):
        t.setdefault("name", names[i])
        if names.count(t["name"]) > 1:
            raise cfg.error("targets", "name", i, f"target name {t['name']!r} is used twice")
        if t["type"] == "liquid":
            if "smiles" not in t:
                raise cfg.error("targets", index=i, message="a liquid target needs 'smiles'")
            continue
        if "dataset" not in t:
            raise cfg.error("targets", index=i, message="missing required key 'dataset'")
        if "records" not in t and "kinds" not in t:
            raise cfg.error("targets", index=i, message="give 'records' (ids) or 'kinds'")
    cfg.optimizer = data["optimizer"]
    cfg.output = data["output"]
    cfg.parallel = data.get("parallel", {})
    return cfg
