"""Resonance-averaged formal charges, as openff-nagl computes its ``atom_average_formal_charge``
feature (setup layer: RDKit + plain Python, runs once per molecule).

Two steps, both as published with openff-nagl (and openff-recharge before it):

1. *Normalization*: RDKit's MolStandardize charge/bond normalizations (nitro to N+(O-)=O,
   sulfoxide to S+(O-), 1,3- and 1,5-separated charges recombined, ...) applied until the
   molecule stops changing, so that equivalent drawings give the same starting structure.
2. *Enumeration* (Gilson, Gilson & Potter, J. Chem. Inf. Comput. Sci. 43, 1982 (2003),
   doi:10.1021/ci034148o): on the heavy-atom graph without neutral sp3 carbons, an electron
   pair moves from a donor (O-, S-, N-, neutral 3-connected N) to an acceptor (O=, S=, N+=,
   N=, N#) along a path of alternating single/double bonds. All forms reachable this way are
   enumerated; forms with the same donor/acceptor atoms count once; only the lowest-"energy"
   forms are kept (5 per charged O-, S-, N- or N+ atom). An atom's feature is its formal
   charge averaged over those forms.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

# RDKit's MolStandardize normalizations.in, in openff-nagl's order (reaction SMARTS are data).
NORMALIZATIONS = (
    "[N,P,As,Sb;X3:1](=[O,S,Se,Te:2])=[O,S,Se,Te:3]>>[*+1:1](-[*-1:2])=[*:3]",
    "[S+2:1]([O-:2])([O-:3])>>[S+0:1](=[O-0:2])(=[O-0:3])",
    "[nH0+0:1]=[OH0+0:2]>>[n+:1]-[O-:2]",
    "[*:1][N:2]=[N:3]#[N:4]>>[*:1][N:2]=[N+:3]=[N-:4]",
    "[*:1]=[N:2]#[N:3]>>[*:1]=[N+:2]=[N-:3]",
    "[!O:1][S+0;X3:2](=[O:3])[!O:4]>>[*:1][S+1:2]([O-:3])[*:4]",
    "[O,S,Se,Te;-1:1][P+;D4:2][O,S,Se,Te;-1:3]>>[*+0:1]=[P+0;D5:2][*-1:3]",
    "[C,S&!$([S+]-[O-]);X3+1:1]([NX3:2])[NX3!H0:3]>>[*+0:1]([N:2])=[N+:3]",
    "[P;X4+1:1]([NX3:2])[NX3!H0:3]>>[*+0:1]([N:2])=[N+:3]",
    "[CX4:1][NX3H:2]-[NX3H:3][CX4:4][NX2+:5]#[NX1:6]>>"
    "[CX4:1][NH0:2]=[NH+:3][C:4][N+0:5]=[NH:6]",
    "[N,P,As,Sb,O,S,Se,Te;-1:1]-[A+0:2]=[N,P,As,Sb,O,S,Se,Te;+1:3]>>[*-0:1]=[*:2]-[*+0:3]",
    "[n,o,p,s;-1:1]:[a:2]=[N,O,P,S;+1:3]>>[*-0:1]:[*:2]-[*+0:3]",
    "[N,O,P,S;-1:1]-[a:2]:[n,o,p,s;+1:3]>>[*-0:1]=[*:2]:[*+0:3]",
    "[N,P,As,Sb,O,S,Se,Te;-1:1]-[A+0:2]=[A:3]-[A:4]=[N,P,As,Sb,O,S,Se,Te;+1:5]>>"
    "[*-0:1]=[*:2]-[*:3]=[*:4]-[*+0:5]",
    "[n,o,p,s;-1:1]:[a:2]:[a:3]:[c:4]=[N,O,P,S;+1:5]>>[*-0:1]:[*:2]:[*:3]:[c:4]-[*+0:5]",
    "[N,O,P,S;-1:1]-[c:2]:[a:3]:[a:4]:[n,o,p,s;+1:5]>>[*-0:1]=[c:2]:[*:3]:[*:4]:[*+0:5]",
    "[N,O;+0!H0:1]-[A:2]=[N!$(*[O-]),O;+1H0:3]>>[*+1:1]=[*:2]-[*+0:3]",
    "[n;+0!H0:1]:[c:2]=[N!$(*[O-]),O;+1H0:3]>>[*+1:1]:[*:2]-[*+0:3]",
    "[N,O;+0!H0:1]-[A:2]=[A:3]-[A:4]=[N!$(*[O-]),O;+1H0:5]>>[*+1:1]=[*:2]-[*:3]=[*:4]-[*+0:5]",
    "[n;+0!H0:1]:[a:2]:[a:3]:[c:4]=[N!$(*[O-]),O;+1H0:5]>>[n+1:1]:[*:2]:[*:3]:[*:4]-[*+0:5]",
    "[F,Cl,Br,I,At;-1:1]=[O:2]>>[*-0:1]-[O-:2]",
    "[N,P,As,Sb;-1:1]=[C+;v3:2]>>[*+0:1]#[C+0:2]",
)

# (element, formal charge, sorted bond orders) -> (role, energy, conjugate key); a donor gives
# an electron pair and becomes its conjugate acceptor, and the reverse.
_TYPES = {
    (8, 0, (2,)): ("A", 0.0, (8, -1, (1,))),
    (8, -1, (1,)): ("D", 5.0, (8, 0, (2,))),
    (16, 0, (2,)): ("A", 0.0, (16, -1, (1,))),
    (16, -1, (1,)): ("D", 5.0, (16, 0, (2,))),
    (7, 1, (1, 1, 2)): ("A", 5.0, (7, 0, (1, 1, 1))),
    (7, 0, (1, 1, 1)): ("D", 0.0, (7, 1, (1, 1, 2))),
    (7, 0, (1, 2)): ("A", 0.0, (7, -1, (1, 1))),
    (7, -1, (1, 1)): ("D", 5.0, (7, 0, (1, 2))),
    (7, 0, (3,)): ("A", 0.0, (7, -1, (2,))),
    (7, -1, (2,)): ("D", 5.0, (7, 0, (3,))),
}


def toolkit_rdmol(rdmol):
    """A copy perceived as the OpenFF toolkit's ``to_rdkit`` does (Kekulé bonds re-aromatized
    with RDKit's MDL model), which the SMARTS below and NAGL's ring features assume."""
    from rdkit import Chem

    mol = Chem.Mol(rdmol)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    Chem.SanitizeMol(mol, Chem.SANITIZE_ALL ^ Chem.SANITIZE_ADJUSTHS
                     ^ Chem.SANITIZE_SETAROMATICITY)
    Chem.SetAromaticity(mol, Chem.AromaticityModel.AROMATICITY_MDL)
    return mol


def normalized_structure(rdmol, max_iter: int = 200) -> tuple[np.ndarray, dict]:
    """Formal charges [N] and Kekulé bond orders {(i, j): order} after the normalizations,
    atom order unchanged."""
    from rdkit import Chem
    from rdkit.Chem import rdChemReactions

    mol = toolkit_rdmol(rdmol)
    n = mol.GetNumAtoms()
    for smarts in NORMALIZATIONS:
        reaction = rdChemReactions.ReactionFromSmarts(smarts)
        last = None
        for _ in range(max_iter):
            products = reaction.RunReactants((mol,), maxProducts=1)
            if not products:
                break
            product = products[0][0]
            origin = [a.GetIntProp("react_atom_idx") for a in product.GetAtoms()]
            mol = Chem.RenumberAtoms(product, [origin.index(i) for i in range(n)])
            Chem.AssignStereochemistry(mol, cleanIt=True)
            smiles = Chem.MolToSmiles(Chem.AddHs(mol))
            if smiles == last:
                break
            last = smiles
        else:
            raise ValueError(f"normalization {smarts} did not converge in {max_iter} steps")
    Chem.SanitizeMol(mol, Chem.SANITIZE_SYMMRINGS)
    Chem.Kekulize(mol)
    charges = np.array([a.GetFormalCharge() for a in mol.GetAtoms()], float)
    orders = {}
    for b in mol.GetBonds():
        i, j = sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
        orders[(i, j)] = int(round(b.GetBondTypeAsDouble()))
    return charges, orders


class _Form:
    """One resonance form of a fragment: node types and bond orders on the reduced graph."""

    def __init__(self, keys: dict, orders: dict):
        self.keys, self.orders = keys, orders  # node -> (Z, charge, bond orders); edge -> order
        roles = {i: _TYPES[k][0] for i, k in keys.items() if k in _TYPES}
        self.acceptors = frozenset(i for i, r in roles.items() if r == "A")
        self.donors = frozenset(i for i, r in roles.items() if r == "D")
        self.energy = sum(_TYPES[k][1] for k in keys.values() if k in _TYPES)

    def identity(self, with_bonds: bool = True):
        bonds = tuple(sorted(self.orders.items())) if with_bonds else ()
        return self.acceptors, self.donors, bonds

    def transfer(self, path) -> _Form:
        keys, orders = dict(self.keys), dict(self.orders)
        for end in (path[0], path[-1]):
            keys[end] = _TYPES[keys[end]][2]
        for k, (i, j) in enumerate(itertools.pairwise(path)):
            edge = (min(i, j), max(i, j))
            orders[edge] += 1 if k % 2 == 0 else -1
        return _Form(keys, orders)


def _alternating(form: _Form, path) -> bool:
    orders = [form.orders[(min(i, j), max(i, j))] for i, j in itertools.pairwise(path)]
    deltas = np.diff(orders)
    return bool(np.all(deltas[::2] == 1) and np.all(deltas[1::2] == -1))


# Simple paths between donors and acceptors grow exponentially with fused conjugated rings;
# openff-nagl does not finish on such molecules. Past this many steps we stop with an error.
MAX_PATH_STEPS = 2_000_000


class ResonanceTooLarge(ValueError):
    pass


def _simple_paths(adjacency: dict, start: int, end: int,
                  budget: list) -> Iterator[tuple[int, ...]]:
    stack = [(start, (start,))]
    while stack:
        budget[0] -= 1
        if budget[0] < 0:
            raise ResonanceTooLarge(f"more than {MAX_PATH_STEPS} steps enumerating resonance"
                                    " paths")
        node, path = stack.pop()
        for nxt in adjacency[node]:
            if nxt == end:
                yield path + (end,)
            elif nxt not in path:
                stack.append((nxt, path + (nxt,)))


def _fragment_forms(start: _Form, adjacency: dict, budget: list) -> list[_Form]:
    closed: dict = {}
    frontier = {start.identity(): start}
    paths: dict = {}
    while frontier:
        found = {}
        for key, form in frontier.items():
            if key in closed:
                continue
            closed[key] = form
            for a in sorted(form.acceptors):
                for d in sorted(form.donors):
                    if (d, a) not in paths:
                        paths[(d, a)] = [p for p in _simple_paths(adjacency, d, a, budget)
                                         if len(p) % 2 == 1]
                    for path in paths[(d, a)]:
                        if _alternating(form, path):
                            new = form.transfer(path)
                            new_key = new.identity()
                            if new_key not in closed and new_key not in frontier:
                                found[new_key] = new
        frontier = found
    distinct = {form.identity(with_bonds=False): form for form in closed.values()}
    lowest = min(f.energy for f in distinct.values())
    return [f for f in distinct.values() if np.isclose(f.energy, lowest)]


def average_formal_charges(rdmol) -> np.ndarray:
    """[N] formal charges averaged over the lowest-energy resonance forms (see module doc)."""
    charges, orders = normalized_structure(rdmol)
    n = len(charges)
    z = np.array([a.GetAtomicNum() for a in rdmol.GetAtoms()])
    bond_orders = [[] for _ in range(n)]
    for (i, j), order in orders.items():
        bond_orders[i].append(order)
        bond_orders[j].append(order)
    keys = {i: (int(z[i]), int(charges[i]), tuple(sorted(bond_orders[i]))) for i in range(n)}
    kept = [i for i in range(n) if z[i] != 1
            and not (z[i] == 6 and keys[i][2] == (1, 1, 1, 1) and charges[i] == 0)]
    kept_set = set(kept)
    adjacency = {i: [] for i in kept}
    for (i, j) in orders:
        if i in kept_set and j in kept_set:
            adjacency[i].append(j)
            adjacency[j].append(i)
    out = charges.copy()
    budget = [MAX_PATH_STEPS]
    for component in _components(adjacency):
        form = _Form({i: keys[i] for i in component},
                     {e: o for e, o in orders.items() if e[0] in component and e[1] in component})
        if not (form.acceptors and form.donors):
            continue
        forms = _fragment_forms(form, adjacency, budget)
        for i in component:
            out[i] = np.mean([f.keys[i][1] for f in forms])
    return out


def _components(adjacency: dict) -> list[set]:
    seen, out = set(), []
    for root in adjacency:
        if root in seen:
            continue
        todo, comp = [root], {root}
        while todo:
            for nxt in adjacency[todo.pop()]:
                if nxt not in comp:
                    comp.add(nxt)
                    todo.append(nxt)
        seen |= comp
        out.append(comp)
    return out
