"""Learned models in the system: molecular graphs, GNN layers (equinox), NAGL charges, an
espaloma-style parameter predictor as a ParameterSource, and training through the system.
Guide: docs/learned.md."""

from chronograd.ml.imported import import_frozen, with_learned_charges
from chronograd.ml.learned_system import (
    LearnedModel,
    learned_system,
    provenance_table,
)
from chronograd.ml.model_files import load_model, save_model
from chronograd.ml.nagl import load_nagl_model
from chronograd.ml.predictor import ParameterPredictor, PredictorConfig

__all__ = ["LearnedModel", "ParameterPredictor", "PredictorConfig", "import_frozen",
           "learned_system", "load_model", "load_nagl_model", "provenance_table", "save_model",
           "with_learned_charges"]
