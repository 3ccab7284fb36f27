"""NAGL graph-network partial charges (openff-nagl's AM1-BCC models) evaluated in JAX.

A SMIRNOFF force field's ``<NAGLCharges model_file=... model_file_hash=...>`` names a model file
shipped by the ``openff-nagl-models`` package. :func:`load_nagl_model` finds it there (or next to
the force field), checks its SHA-256, reads its weights, configuration, chemical domain and
lookup table with the restricted reader (:mod:`chronograd.ml.torch_archive`; no PyTorch, no
pickled code) and returns a :class:`NAGLChargeModel`.

Charges are computed as openff-nagl computes them, molecule by connected component: a
molecule in the model's lookup table (AM1-BCC ELF10 charges by fixed-H InChI) takes those
values; otherwise the atom features (element, connectivity, resonance-averaged formal charge,
ring sizes) go through the SAGE convolutions and the readout network, whose three outputs per
atom (charge prior, electronegativity, hardness) are equilibrated to the component's formal
charge (:func:`~chronograd.ml.layers.equilibrate_charges`). Finally the whole molecule's
charges are shifted uniformly to sum to its formal charge (the OpenFF toolkit's
``normalize_partial_charges``).

The network is an equinox module (:class:`NAGLNetwork`), so charges are differentiable with
respect to its weights: :meth:`NAGLChargeModel.charge_fn` returns ``q(weights, graph)``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.ml.atom_features import atom_features, element_symbol
from chronograd.ml.graph import MolecularGraph, molecular_graph, pad_graph
from chronograd.ml.layers import ACTIVATIONS, SAGEStack, equilibrate_charges
from chronograd.ml.torch_archive import read_torch_archive


class NAGLNetwork(eqx.Module):
    """SAGE convolutions -> per-atom MLP -> (prior, electronegativity, hardness) ->
    equilibrated charges [N] (e)."""

    convolution: SAGEStack
    readout: eqx.nn.MLP

    def __call__(self, graph: MolecularGraph):
        h = self.convolution(graph.node_features, graph)
        out = jax.vmap(self.readout)(h)
        return equilibrate_charges(out[:, 0], out[:, 1], out[:, 2], graph)


@dataclass(frozen=True, eq=False)
class NAGLChargeModel:
    """A NAGL charge model: network, atom-feature spec, chemical domain and lookup table."""

    network: NAGLNetwork
    feature_spec: list
    allowed_elements: tuple
    forbidden_patterns: tuple
    lookup: dict  # fixed-H InChI -> (mapped SMILES, charges)
    path: Path
    sha256: str
    _compiled: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    # ---- setup layer -----------------------------------------------------------------

    def check_domain(self, mol) -> None:
        """InputError naming the first atom outside the model's elements or matched by one of
        its forbidden patterns (the model was not trained on such chemistry)."""
        from rdkit import Chem

        allowed = set(self.allowed_elements)
        for atom in mol.rdmol.GetAtoms():
            if atom.GetAtomicNum() not in allowed:
                names = ", ".join(element_symbol(z) for z in sorted(allowed))
                raise InputError(
                    f"{mol.name or 'molecule'}: atom index {atom.GetIdx()} is"
                    f" {element_symbol(atom.GetAtomicNum())}, an element the NAGL model"
                    f" {self.name} was not trained on; supported elements: {names}")
        from chronograd.ml.resonance import toolkit_rdmol

        rd = toolkit_rdmol(mol.rdmol)  # aromaticity as the OpenFF toolkit matches SMARTS
        for pattern in self.forbidden_patterns:
            match = rd.GetSubstructMatch(Chem.MolFromSmarts(pattern))
            if match:
                raise InputError(
                    f"{mol.name or 'molecule'}: atoms {list(match)} match {pattern!r}, a"
                    f" pattern outside the NAGL model {self.name}'s chemical domain; assign"
                    " charges another way (charges='am1bcc')")

    def graph(self, mol) -> MolecularGraph:
        """The model's input graph for ``mol`` (features, bonds, formal charges)."""
        x = atom_features(mol, self.feature_spec, label=f"NAGL model {self.name}")
        formal = [a.GetFormalCharge() for a in mol.rdmol.GetAtoms()]
        return molecular_graph(x, mol.bonds(), formal)

    def lookup_charges(self, mol) -> np.ndarray | None:
        """Charges from the lookup table when ``mol`` (one connected molecule) is in it."""
        if not self.lookup:
            return None
        from rdkit import Chem, RDLogger

        from chronograd.ml.resonance import toolkit_rdmol

        RDLogger.DisableLog("rdApp.*")
        try:
            inchi = Chem.MolToInchi(toolkit_rdmol(mol.rdmol), "/LargeMolecules /FixedH")
        finally:
            RDLogger.EnableLog("rdApp.*")
        if not inchi or inchi not in self.lookup:
            return None
        mapped, values = self.lookup[inchi]
        mapping = _atom_map(mol.rdmol, mapped)
        return None if mapping is None else np.asarray(values, float)[mapping]

    # ---- compute layer ---------------------------------------------------------------

    def charge_fn(self):
        """``q(network, graph) -> [N]`` charges, a pure JAX function of the network's weights
        (an equinox module) and a padded graph; jit/vmap/grad-able."""
        return _network_charges

    def charges(self, mol) -> np.ndarray:
        """[N] partial charges (e) of ``mol`` as openff-nagl and the OpenFF toolkit assign
        them (lookup table or network per connected component, then normalized)."""
        from chronograd.ml.graph import connected_components

        n = mol.n_atoms
        components = connected_components(n, mol.bonds())
        q = np.zeros(n)
        rest = []
        for c in range(int(components.max()) + 1 if n else 0):
            atoms = np.flatnonzero(components == c)
            sub = _submolecule(mol, atoms) if len(atoms) < n else mol
            table = self.lookup_charges(sub)
            if table is not None:
                q[atoms] = table
            else:
                self.check_domain(sub)
                rest.append(atoms)
        if rest:
            atoms = np.concatenate(rest)
            net = self.network_charges(self.graph(mol))
            q[atoms] = net[atoms]
        # float32, as the reference returns them, then the toolkit's uniform normalization
        q = q.astype(np.float32).astype(float)
        return q + (mol.total_charge - q.sum()) / max(n, 1)

    def network_charges(self, graph: MolecularGraph) -> np.ndarray:
        """The network's charges for one graph, compiled once per padded size."""
        n, e, c = len(graph.node_mask), len(graph.edge_mask), len(graph.component_charge)
        shape = (_bucket(n + 1, 32), _bucket(e, 64), _bucket(c, 4))  # few compilations
        padded = pad_graph(graph, *shape)
        out = _JIT_CHARGES(self.network, jax.tree.map(jnp.asarray, padded))
        return np.asarray(out)[:n]


def _bucket(n: int, smallest: int) -> int:
    """The next power of two times ``smallest`` that holds ``n``."""
    size = smallest
    while size < n:
        size *= 2
    return size


def _network_charges(network: NAGLNetwork, graph: MolecularGraph):
    return network(graph)


_JIT_CHARGES = eqx.filter_jit(_network_charges)


def _submolecule(mol, atoms):
    from rdkit import Chem

    from chronograd.topology import Molecule

    keep = set(int(a) for a in atoms)
    rw = Chem.RWMol(mol.rdmol)
    for idx in sorted(set(range(mol.n_atoms)) - keep, reverse=True):
        rw.RemoveAtom(idx)
    sub = rw.GetMol()
    Chem.SanitizeMol(sub)
    return Molecule(sub, mol.name)


def _atom_map(rdmol, mapped_smiles: str):
    """index map: our atom i -> the table entry's atom, by graph isomorphism (bond orders and
    charges first, then elements and connectivity only, as the reference does)."""
    from rdkit import Chem

    ps = Chem.SmilesParserParams()
    ps.removeHs = False
    entry = Chem.MolFromSmiles(mapped_smiles, ps)
    if entry is None or entry.GetNumAtoms() != rdmol.GetNumAtoms():
        return None
    order = np.argsort([a.GetAtomMapNum() for a in entry.GetAtoms()])
    entry = Chem.RenumberAtoms(entry, [int(i) for i in order])
    for a in entry.GetAtoms():
        a.SetAtomMapNum(0)
    match = rdmol.GetSubstructMatch(entry, useChirality=False)
    if not match:
        params = Chem.AdjustQueryParameters.NoAdjustments()
        params.makeBondsGeneric = True
        query = Chem.AdjustQueryProperties(entry, params)
        plain = Chem.RWMol(rdmol)
        for a in plain.GetAtoms():
            a.SetFormalCharge(0)
        match = plain.GetSubstructMatch(query)
        if not match:
            return None
    # match[k] = our atom for entry atom k; we want entry atom for each of ours
    mapping = np.empty(len(match), int)
    mapping[list(match)] = np.arange(len(match))
    return mapping


# ---- loading --------------------------------------------------------------------------------


def find_model_file(model_file: str, *, search: tuple = ()) -> Path:
    """The path of a NAGL model file named by a force field: an existing path, a file next to
    the force field (``search``), or one shipped by the openff-nagl-models package."""
    path = Path(model_file)
    if path.is_file():
        return path
    for folder in search:
        candidate = Path(folder) / model_file
        if candidate.is_file():
            return candidate
    try:
        root = Path(str(importlib.resources.files("openff.nagl_models") / "models"))
    except ModuleNotFoundError:
        root = None
    if root is not None and root.is_dir():
        found = sorted(root.rglob(path.name))
        if found:
            return found[0]
    raise InputError(
        f"NAGL model file {model_file!r} not found (searched the openff-nagl-models package"
        f"{' and ' + ', '.join(map(str, search)) if search else ''}); install"
        " openff-nagl-models (pip install openff-nagl-models) or give the file's path")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_nagl_model(model_file: str, model_file_hash: str | None = None, *,
                    search: tuple = ()) -> NAGLChargeModel:
    """The NAGL model named ``model_file``, checked against ``model_file_hash`` (SHA-256, as a
    force field's NAGLCharges section gives it). Cached per file and hash."""
    path = find_model_file(model_file, search=search)
    return _load(str(path.resolve()), model_file_hash)


@functools.cache
def _load(path: str, expected: str | None) -> NAGLChargeModel:
    path = Path(path)
    digest = sha256_of(path)
    if expected is not None and digest.lower() != str(expected).strip().lower():
        raise InputError(f"{path}: SHA-256 {digest} does not match model_file_hash {expected}"
                         " given by the force field; the file is corrupt or a different model"
                         " (reinstall openff-nagl-models, or fix the hash)")
    saved = read_torch_archive(path)
    try:
        hyper, weights = saved["hyperparameters"], saved["state_dict"]
        config = hyper["config"]
        network = _network_from(config, weights)
        domain = hyper.get("chemical_domain") or {}
        lookup = {}
        for table in (hyper.get("lookup_tables") or {}).values():
            for key, entry in table["properties"].items():
                lookup[key] = (entry["mapped_smiles"], tuple(entry["property_value"]))
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path}: not a NAGL charge model this version reads ({err!r});"
                         " supported: SAGEConv convolutions with an atom readout and"
                         " regularized_compute_partial_charges") from err
    return NAGLChargeModel(network, list(config["atom_features"]),
                           tuple(int(z) for z in domain.get("allowed_elements", ())),
                           tuple(domain.get("forbidden_patterns", ())), lookup, path, digest)


def _network_from(config: dict, weights: dict) -> NAGLNetwork:
    conv = config["convolution"]
    if conv["architecture"] != "SAGEConv":
        raise ValueError(f"convolution architecture {conv['architecture']}")
    layers = conv["layers"]
    if any(layer.get("aggregator_type", "mean") != "mean" for layer in layers):
        raise ValueError("only the mean aggregator")
    readouts = config["readouts"]
    if len(readouts) != 1:
        raise ValueError("one readout expected")
    (name, readout), = readouts.items()
    if readout.get("postprocess") != "regularized_compute_partial_charges" or \
            readout.get("pooling") != "atoms":
        raise ValueError(f"readout {name}: {readout.get('pooling')}/{readout.get('postprocess')}")
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    n_in = w["convolution_module.gcn_layers.0.fc_self.weight"].shape[1]
    sizes = [int(layer["hidden_feature_size"]) for layer in layers]
    acts = [str(layer["activation_function"]) for layer in layers]
    stack = SAGEStack(n_in, sizes, activations=acts, key=jax.random.PRNGKey(0))
    new_layers = []
    for k, layer in enumerate(stack.layers):
        pre = f"convolution_module.gcn_layers.{k}."
        layer = eqx.tree_at(lambda m: (m.fc_self.weight, m.fc_self.bias, m.fc_neigh.weight),
                            layer, (jnp.asarray(w[pre + "fc_self.weight"]),
                                    jnp.asarray(w[pre + "fc_self.bias"]),
                                    jnp.asarray(w[pre + "fc_neigh.weight"])))
        new_layers.append(layer)
    stack = eqx.tree_at(lambda s: s.layers, stack, tuple(new_layers))
    hidden = readout["layers"]
    if len(hidden) != 1:
        raise ValueError("a readout with one hidden layer")
    act = str(hidden[0]["activation_function"])
    pre = f"readout_modules.{name}.readout_layers."
    width = int(hidden[0]["hidden_feature_size"])
    mlp = eqx.nn.MLP(sizes[-1], 3, width, 1, activation=ACTIVATIONS[act],
                     key=jax.random.PRNGKey(1))
    mlp = eqx.tree_at(lambda m: (m.layers[0].weight, m.layers[0].bias, m.layers[1].weight,
                                 m.layers[1].bias), mlp,
                      (jnp.asarray(w[pre + "0.weight"]), jnp.asarray(w[pre + "0.bias"]),
                       jnp.asarray(w[pre + "3.weight"]), jnp.asarray(w[pre + "3.bias"])))
    return NAGLNetwork(stack, mlp)
