"""Learned models in the system: molecular graphs, GNN layers (equinox), NAGL charges, an
espaloma-style parameter predictor as a ParameterSource, graph-network potentials (SchNet,
PaiNN) as energy terms, and training through the system. Guides: docs/learned.md,
docs/potentials.md."""

from chronograd.ml.imported import import_frozen, with_learned_charges
from chronograd.ml.learned_system import (
    LearnedModel,
    learned_system,
    provenance_table,
)
from chronograd.ml.model_files import load_model, save_model
from chronograd.ml.nagl import load_nagl_model
from chronograd.ml.potential_models import PaiNN, PotentialConfig, SchNet
from chronograd.ml.potential_term import (
    NeuralPotentialTerm,
    PotentialModel,
    potential_system,
    with_potential,
)
from chronograd.ml.predictor import ParameterPredictor, PredictorConfig

__all__ = ["LearnedModel", "NeuralPotentialTerm", "PaiNN", "ParameterPredictor",
           "PotentialConfig", "PotentialModel", "PredictorConfig", "SchNet", "import_frozen",
           "learned_system", "load_model", "load_nagl_model", "potential_system",
           "provenance_table", "save_model", "with_learned_charges", "with_potential"]
