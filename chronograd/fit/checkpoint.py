"""Fit checkpoints: the fit loop's state as data (a JSON header and arrays in one ``.npz``),
never pickled, so that resuming from a planted or damaged file cannot run code.

The state is a tree of dicts, lists, tuples, named tuples (optax states), numbers, strings,
None and arrays. ``encode`` turns it into JSON with each array replaced by a reference into the
archive; ``decode`` rebuilds it, creating named tuples only of the types found in a template
(the optimizer's freshly initialized state), never a type named by the file. The archive
carries a format version, the SHA-256 of the config it belongs to and a checksum of its
contents (``chronograd.interop.archive``); all are checked before the state is used.
"""

from __future__ import annotations

import numpy as np

from chronograd.errors import InputError
from chronograd.interop.archive import read_archive, write_archive

FORMAT = "chronograd.fit-checkpoint"
VERSION = 1
FILENAME = "checkpoint.npz"
LEGACY_FILENAME = "checkpoint.pkl"  # written by chronograd < this format; never read


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def encode(obj, arrays: dict):
    """JSON-able form of ``obj``; arrays go into ``arrays`` (name -> ndarray)."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int | float) and not isinstance(obj, np.generic):
        return obj
    if isinstance(obj, np.generic | np.ndarray) or hasattr(obj, "__array__"):
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(obj)
        return {"array": name}
    if _is_namedtuple(obj):
        return {"namedtuple": type(obj).__name__, "items": [encode(v, arrays) for v in obj]}
    if isinstance(obj, tuple):
        return {"tuple": [encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return {"list": [encode(v, arrays) for v in obj]}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise TypeError(f"checkpoint dict keys must be str or int, got {k!r}")
        return {"dict": [[k, encode(v, arrays)] for k, v in obj.items()]}
    raise TypeError(f"cannot store a {type(obj).__name__} in a fit checkpoint")


def namedtuple_types(template) -> dict[str, type]:
    """{name: type} of every named tuple in ``template`` (the types ``decode`` may build)."""
    found: dict[str, type] = {}

    def walk(x):
        if _is_namedtuple(x):
            found[type(x).__name__] = type(x)
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list | tuple):
            for v in x:
                walk(v)

    walk(template)
    return found


def decode(node, arrays: dict, types: dict[str, type], where: str):
    """Inverse of ``encode``; raises InputError naming ``where`` for anything unexpected."""
    if node is None or isinstance(node, bool | int | float | str):
        return node
    if isinstance(node, dict) and len(node) in (1, 2):
        if set(node) == {"array"} and isinstance(node["array"], str):
            if node["array"] not in arrays:
                raise InputError(f"{where}: refers to a missing array {node['array']!r}")
            return arrays[node["array"]]
        if set(node) == {"list"} and isinstance(node["list"], list):
            return [decode(v, arrays, types, where) for v in node["list"]]
        if set(node) == {"tuple"} and isinstance(node["tuple"], list):
            return tuple(decode(v, arrays, types, where) for v in node["tuple"])
        if set(node) == {"dict"} and isinstance(node["dict"], list):
            out = {}
            for item in node["dict"]:
                if (not isinstance(item, list) or len(item) != 2
                        or not isinstance(item[0], str | int) or isinstance(item[0], bool)):
                    raise InputError(f"{where}: malformed dict entry {item!r:.80}")
                out[item[0]] = decode(item[1], arrays, types, where)
            return out
        if set(node) == {"namedtuple", "items"} and isinstance(node["items"], list):
            cls = types.get(node["namedtuple"])
            if cls is None or len(node["items"]) != len(cls._fields):
                raise InputError(f"{where}: state type {node['namedtuple']!r:.60} does not"
                                 " belong to this optimizer")
            return cls(*[decode(v, arrays, types, where) for v in node["items"]])
    raise InputError(f"{where}: unexpected entry {node!r:.80}")


def write_fit_checkpoint(path, blob: dict, *, config_sha256: str) -> None:
    arrays: dict = {}
    header = {"format": FORMAT, "version": VERSION, "config_sha256": config_sha256,
              "state": encode(blob, arrays)}
    write_archive(path, header, arrays)


def _check_tree(value, template, where: str) -> None:
    """Same structure, shapes and dtype kinds as ``template`` (the optimizer's own state)."""
    import jax

    leaves, tree = jax.tree_util.tree_flatten(value)
    t_leaves, t_tree = jax.tree_util.tree_flatten(template)
    if tree != t_tree:
        raise InputError(f"{where}: the optimizer state does not have this optimizer's"
                         " structure; resume with the optimizer that wrote it")
    for a, b in zip(leaves, t_leaves, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
            raise InputError(f"{where}: an optimizer state array has shape {a.shape}"
                             f" ({a.dtype}), expected {b.shape} ({b.dtype})")


def open_fit_checkpoint(path, *, config_sha256: str, config_path) -> tuple[dict, dict]:
    """(header, arrays) of an intact fit checkpoint of this format that belongs to the config
    with SHA-256 ``config_sha256``; cheap, so it runs before the objective is built.

    Raises:
        InputError: naming the file and what does not match.
    """
    header, arrays = read_archive(path, format=FORMAT, version=VERSION, what="fit checkpoint")
    if header.get("config_sha256") != config_sha256:
        raise InputError(f"{config_path}: the config changed since the checkpoint {path} was"
                         " written; resume with the same config or start a new fit")
    return header, arrays


def restore_fit_checkpoint(header: dict, arrays: dict, *, path, labels: list[str],
                           state_template: dict, iterations: int) -> dict:
    """The checkpoint dict written by the fit loop, after checking that it belongs to these
    parameters and that its state fits this optimizer (``state_template``: its fresh state).

    Raises:
        InputError: naming the file and what does not match.
    """
    where = str(path)
    blob = decode(header.get("state"), arrays, namedtuple_types(state_template), where)
    if not isinstance(blob, dict):
        raise InputError(f"{where}: the checkpoint holds no fit state")
    need = {"iteration": int, "state": dict, "log": list, "evaluations": tuple,
            "wall_s": float, "labels": list, "target_states": dict}
    for key, kind in need.items():
        if not isinstance(blob.get(key), kind) or isinstance(blob.get(key), bool):
            raise InputError(f"{where}: the checkpoint's {key!r} is missing or malformed")
    ev = blob["evaluations"]
    if len(ev) != 3 or not all(isinstance(v, int) and v >= 0 for v in ev):
        raise InputError(f"{where}: the checkpoint's evaluation counts are malformed")
    if not all(isinstance(e, dict) for e in blob["log"]):
        raise InputError(f"{where}: the checkpoint's log is malformed")
    if blob["labels"] != list(labels):
        raise InputError(f"{where}: the checkpoint was written for other parameters (the force"
                         " field or the [[parameters]] selection changed); start a new fit")
    # the log: one entry per iteration up to the checkpoint's, after the start's (iteration 0)
    numbers = [e.get("iteration") for e in blob["log"]]
    first = numbers[0] if numbers and numbers[0] in (0, 1) else 1
    if not 0 <= blob["iteration"] <= iterations or \
            numbers != list(range(first, blob["iteration"] + 1)):
        raise InputError(f"{where}: the checkpoint's iteration {blob['iteration']} does not"
                         f" fit its log ({len(blob['log'])} entries) or the {iterations}"
                         " iterations of the config")
    state = blob["state"]
    phi = np.asarray(state.get("phi"))
    n = np.asarray(state_template["phi"]).shape
    if phi.shape != n or phi.dtype.kind != "f" or not np.all(np.isfinite(phi)):
        raise InputError(f"{where}: the checkpoint's parameters have shape {phi.shape}, expected"
                         f" {n} finite values")
    for key, value in state_template.items():
        if key not in state:
            raise InputError(f"{where}: the optimizer state has no {key!r}; resume with the"
                             " optimizer that wrote it")
        if value is not None:
            _check_tree(state[key], value, where)
    return blob
