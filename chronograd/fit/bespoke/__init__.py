"""Bespoke torsion fitting (OpenFF BespokeFit's workflow): fragment around a rotatable bond,
molecule-specific torsion SMIRKS, a torsiondrive/geomeTRIC scan with a QM engine, a fit.

    from chronograd.fit.bespoke import run_bespoke
    report = run_bespoke("ibuprofen.sdf", bonds=[(8, 13)], qm="xtb", out="bespoke-out")
"""

from chronograd.fit.bespoke.fragment import (
    BespokeError,
    Fragment,
    check_rotatable,
    fragment,
    rotatable_bonds,
)
from chronograd.fit.bespoke.scan import QMEngine, torsion_scan
from chronograd.fit.bespoke.smirks import bespoke_torsions
from chronograd.fit.bespoke.workflow import run_bespoke

__all__ = ["BespokeError", "Fragment", "QMEngine", "bespoke_torsions", "check_rotatable",
           "fragment", "rotatable_bonds", "run_bespoke", "torsion_scan"]
