"""Fitting force-field parameters to QM data and liquid properties: data, targets,
objective, optimizers, the fit loop (``chronograd fit``) and its report. See docs/fitting.md."""

from chronograd.fit.config import load_config
from chronograd.fit.data import QMRecord, list_records, load_qm_dataset
from chronograd.fit.liquid import LiquidTarget
from chronograd.fit.objective import DEFAULT_PRIORS, Evaluator, Objective, select_parameters
from chronograd.fit.optimizers import make_optimizer
from chronograd.fit.runner import FitError, build_objective, run_fit
from chronograd.fit.targets import (
    EnergyForceTarget,
    OptimizedGeometryTarget,
    TorsionProfileTarget,
)

__all__ = ["DEFAULT_PRIORS", "EnergyForceTarget", "Evaluator", "FitError", "LiquidTarget",
           "Objective", "OptimizedGeometryTarget",
           "QMRecord", "TorsionProfileTarget", "build_objective", "list_records",
           "load_config", "load_qm_dataset", "make_optimizer", "run_fit", "select_parameters"]
