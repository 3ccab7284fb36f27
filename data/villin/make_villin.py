"""Generate the shipped villin headpiece system (run once; outputs are committed).

Source structure: villin headpiece N68H in TIP3P water with ions, the `test.pdb` that ships
with OpenMM (openmm/app/data/test.pdb). Force field: amber14-all + amber14/tip3p (OpenMM's own
files), PME with a 1.0 nm cutoff, no constraints (so every bond has an energy term).

Writes, next to this script:
  villin_solvated.xml  the OpenMM System (openmm.XmlSerializer)
  villin_solvated.pdb  positions and CRYST1 box

Run: `python data/villin/make_villin.py`
"""

import os
from pathlib import Path

import openmm
import openmm.app as app
import openmm.unit as u

HERE = Path(__file__).parent


def main():
    source = os.path.join(os.path.dirname(app.__file__), "data", "test.pdb")
    pdb = app.PDBFile(source)
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    system = ff.createSystem(pdb.topology, nonbondedMethod=app.PME,
                             nonbondedCutoff=1.0 * u.nanometer, constraints=None,
                             rigidWater=False)
    (HERE / "villin_solvated.xml").write_text(openmm.XmlSerializer.serialize(system))
    with open(HERE / "villin_solvated.pdb", "w") as fh:
        app.PDBFile.writeFile(pdb.topology, pdb.positions, fh, keepIds=True)
    print(f"wrote {system.getNumParticles()} particles, openmm {openmm.__version__}")


if __name__ == "__main__":
    main()
