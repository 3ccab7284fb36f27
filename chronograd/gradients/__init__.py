"""Gradients of observables with respect to force-field parameters: one entry point, the
estimator chosen by keyword.

    import chronograd as cg
    from chronograd import observables as obs

    # trajectory averages, noise fixed by the state's key
    r = cg.gradients.gradient(obs.potential_energy(system), adjoint="forward",
                              integrator=integ, state=state, n_steps=200, wrt=mask)
    # equilibrium averages from stored frames
    r = cg.gradients.gradient(obs.density(system.masses), adjoint="ensemble", system=system,
                              frames=frames, boxes=boxes, temperature=300.0)
    # a property of a minimum
    r = cg.gradients.gradient(obs.distance(0, 5), adjoint="implicit", system=system,
                              positions=x0)
    print(r.value, r.flat, r.verdict)

Estimators: "forward", "windowed", "reverse", "checkpointed", "finite-difference"
(trajectory_gradient), "implicit" (implicit_gradient), "ensemble" (ensemble_gradient).
Reweighting: ``reweight`` (EXP, MBAR). Consistency: ``time_vs_ensemble``.
docs/gradients.md says which to use when, with measured cost and memory.
"""

from __future__ import annotations

from chronograd.errors import InputError
from chronograd.gradients.common import (
    FlatParams,
    GradientError,
    GradientResult,
    flat_params,
    parameter_labels,
)
from chronograd.gradients.ensemble import (
    ReweightingError,
    effective_sample_size,
    ensemble_gradient,
    mean_std_error,
    reduced_potentials,
    reweight,
    statistical_inefficiency,
    time_vs_ensemble,
)
from chronograd.gradients.implicit import (
    batched_minimized_positions,
    implicit_gradient,
    minimized_positions,
    rigid_modes,
)
from chronograd.gradients.trajectory import TRAJECTORY_ESTIMATORS, trajectory_gradient

ESTIMATORS = TRAJECTORY_ESTIMATORS + ("implicit", "ensemble")
_NEEDS = {"trajectory": ("integrator", "state", "n_steps"),
          "implicit": ("system", "positions"),
          "ensemble": ("system", "frames", "temperature")}


def gradient(observable, *, adjoint: str, **kwargs) -> GradientResult:
    """d(average of ``observable``)/dtheta by the estimator named in ``adjoint``.

    Trajectory estimators take integrator=, state=, n_steps= (and every=, average=, window=,
    segment=); "implicit" takes system=, positions= (and box=, tolerance=); "ensemble"
    takes system=, frames=, temperature= (and boxes=, transform=). All take params= and wrt=.
    """
    if adjoint not in ESTIMATORS:
        raise InputError(f"adjoint must be one of {', '.join(ESTIMATORS)}; got {adjoint!r}")
    kind = adjoint if adjoint in ("implicit", "ensemble") else "trajectory"
    missing = [k for k in _NEEDS[kind] if k not in kwargs]
    if missing:
        raise InputError(f"adjoint={adjoint!r} needs {', '.join(m + '=' for m in missing)}")
    if kind == "trajectory":
        integ, state, n = (kwargs.pop(k) for k in _NEEDS[kind])
        return trajectory_gradient(integ, state, n, observable, adjoint=adjoint, **kwargs)
    if kind == "implicit":
        system, positions = kwargs.pop("system"), kwargs.pop("positions")
        return implicit_gradient(system, positions, observable, **kwargs)
    system, frames = kwargs.pop("system"), kwargs.pop("frames")
    return ensemble_gradient(system, frames, observable, **kwargs)


__all__ = ["ESTIMATORS", "FlatParams", "GradientError", "GradientResult", "ReweightingError",
           "batched_minimized_positions", "effective_sample_size", "ensemble_gradient",
           "flat_params", "gradient",
           "implicit_gradient", "minimized_positions", "parameter_labels",
           "mean_std_error", "reduced_potentials", "reweight", "rigid_modes",
           "statistical_inefficiency",
           "time_vs_ensemble", "trajectory_gradient"]
