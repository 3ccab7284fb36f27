"""Starting configurations: water boxes, solvated molecules and neat liquids (setup layer).

Water comes from OpenMM's pre-equilibrated TIP3P box (``Modeller.addSolvent``), so a box is
near equilibrium before the first step; a solute is placed at the centre and waters that
overlap it are removed. A neat liquid is a cubic lattice of randomly rotated copies at the
requested density; minimize it before dynamics.
"""

from __future__ import annotations

import numpy as np

from chronograd.errors import InputError
from chronograd.topology.molecule import Molecule
from chronograd.units import AVOGADRO


def _water_positions(length_nm: float) -> np.ndarray:
    """[W, 3, 3] positions (O, H, H) of an equilibrated TIP3P cube of side ``length_nm``."""
    import openmm
    import openmm.app as app
    import openmm.unit as u

    ff = app.ForceField("amber14/tip3p.xml")
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(ff, model="tip3p", boxSize=openmm.Vec3(*[length_nm] * 3) * u.nanometer)
    pos = np.asarray(modeller.positions.value_in_unit(u.nanometer))
    out = []
    for res in modeller.topology.residues():
        idx = {a.element.symbol if a.element.symbol == "O" else a.name: a.index
               for a in res.atoms()}
        out.append(pos[[idx["O"], idx["H1"], idx["H2"]]])
    waters = np.asarray(out)
    # Modeller tiles its equilibrated box without looking across the new periodic boundary:
    # drop waters whose oxygen comes closer than 0.25 nm to a kept one's periodic image.
    from scipy.spatial import cKDTree

    oxygens = np.mod(waters[:, 0], length_nm)
    tree = cKDTree(oxygens, boxsize=length_nm)
    drop = set()
    for i, j in sorted(tree.query_pairs(0.25)):
        if i not in drop and j not in drop:
            drop.add(j)
    return waters[[k for k in range(len(waters)) if k not in drop]]


def water_box(length_nm: float) -> tuple[list[Molecule], np.ndarray, np.ndarray]:
    """(molecules, positions [N, 3] nm, box [3, 3] nm) of a cubic box of water."""
    if length_nm < 1.0:
        raise InputError(f"a water box needs a side of at least 1 nm, got {length_nm}")
    water = Molecule.from_smiles("O", name="water")
    waters = _water_positions(length_nm)
    return [water] * len(waters), waters.reshape(-1, 3), np.eye(3) * length_nm


def solvate(solute: Molecule, *, padding_nm: float = 1.0, min_distance_nm: float = 0.25):
    """The solute (its conformer) at the centre of a cubic water box that extends
    ``padding_nm`` beyond it on every side; waters closer than ``min_distance_nm`` to the
    solute are removed. Returns (molecules, positions, box)."""
    if solute.positions is None:
        raise InputError(f"{solute.name or 'the solute'} has no conformer to solvate")
    extent = np.ptp(solute.positions, axis=0).max()
    length = float(extent + 2 * padding_nm)
    waters = _water_positions(length)
    centre = solute.positions - solute.positions.mean(0) + length / 2
    from scipy.spatial import cKDTree

    tree = cKDTree(centre)
    near = tree.query(waters.reshape(-1, 3), k=1)[0].reshape(-1, 3).min(axis=1)
    keep = waters[near >= min_distance_nm]
    water = Molecule.from_smiles("O", name="water")
    mols = [solute] + [water] * len(keep)
    return mols, np.concatenate([centre, keep.reshape(-1, 3)]), np.eye(3) * length


def liquid_box(molecule: Molecule, n_molecules: int, *, density_g_ml: float, seed: int = 0):
    """``n_molecules`` copies of ``molecule`` on a cubic lattice in a box of the given mass
    density (g/mL), each randomly rotated. Returns (molecules, positions, box)."""
    if molecule.positions is None:
        raise InputError(f"{molecule.name or 'the molecule'} has no conformer")
    if n_molecules < 1 or density_g_ml <= 0:
        raise InputError("n_molecules must be >= 1 and density_g_ml > 0")
    from scipy.spatial.transform import Rotation

    mass_g = float(np.sum(molecule.masses)) * n_molecules / AVOGADRO
    length = (mass_g / density_g_ml * 1e21) ** (1.0 / 3.0)  # cm^3 -> nm^3
    per_side = int(np.ceil(n_molecules ** (1.0 / 3.0)))
    spacing = length / per_side
    extent = np.ptp(molecule.positions, axis=0).max()
    if extent > 1.5 * spacing:
        raise InputError(f"{molecule.name}: the molecule ({extent:.2f} nm) does not fit a"
                         f" lattice spacing of {spacing:.2f} nm at this density; use fewer"
                         " molecules per lattice or a lower starting density")
    rng = np.random.default_rng(seed)
    x0 = molecule.positions - molecule.positions.mean(0)
    pos = []
    for idx in list(np.ndindex(per_side, per_side, per_side))[:n_molecules]:
        rot = Rotation.random(random_state=rng).as_matrix()
        pos.append(x0 @ rot.T + (np.array(idx) + 0.5) * spacing)
    return [molecule] * n_molecules, np.concatenate(pos), np.eye(3) * length
