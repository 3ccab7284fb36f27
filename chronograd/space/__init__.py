"""Periodic boxes, displacements, cell lists and neighbor lists."""

from chronograd.space.neighbor_list import NeighborList, NeighborListFns, neighbor_list
from chronograd.space.periodic import (
    box_volume,
    check_reduced_box,
    displacement,
    minimum_image,
    safe_norm,
    wrap_positions,
)

__all__ = [
    "NeighborList",
    "NeighborListFns",
    "box_volume",
    "check_reduced_box",
    "displacement",
    "minimum_image",
    "neighbor_list",
    "safe_norm",
    "wrap_positions",
]
