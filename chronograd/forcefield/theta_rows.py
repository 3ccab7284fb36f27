"""Where each force-field parameter sits in flat theta (setup layer).

``ThetaRows`` answers "which row of ``ravel_pytree(ff.params)`` holds attribute ``attr`` of
parameter ``pidx`` of ``handler``", the question every part of ``create_system`` asks when it
fills a slot map.
"""

from __future__ import annotations

from chronograd.system.source import theta_offsets

RMIN_HALF_TO_SIGMA = 2.0 / 2.0 ** (1.0 / 6.0)


class ThetaRows:
    """Flat-theta rows of a ForceField's parameters."""

    def __init__(self, ff):
        self.ff = ff
        self.offsets = theta_offsets(ff.params)
        # per (handler, attribute): parameter index -> its positions in that theta leaf
        self.positions_in_leaf = {}
        for handler, attrs in ff.row_info.items():
            for attr, info in attrs.items():
                table = self.positions_in_leaf[(handler, attr)] = {}
                for pos, pidx in enumerate(info.parameter_index):
                    table.setdefault(pidx, []).append(pos)

    def row(self, handler, attr, pidx):
        """Flat theta row of a single-valued attribute of parameter ``pidx``."""
        return self.offsets[(handler, attr)] + self.positions_in_leaf[(handler, attr)][pidx][0]

    def sigma_row(self, handler, p, pidx) -> tuple[int, float]:
        """(theta row, factor) giving sigma: the sigma row, or rmin_half * 2^(5/6)."""
        if "sigma" in p.values:
            return self.row(handler, "sigma", pidx), 1.0
        return self.row(handler, "rmin_half", pidx), RMIN_HALF_TO_SIGMA
