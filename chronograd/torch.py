"""PyTorch front end (optional extra: ``pip install 'chronograd[torch]'``).

``energy_module(system)`` -> ``torch.nn.Module`` (energy with autograd to positions, box and
parameters); ``jax_function(fn)`` -> any JAX function as a ``torch.autograd.Function``;
tensors cross by DLPack. Implementation: :mod:`chronograd.interop.torch_bridge`.
"""

from chronograd.interop.torch_bridge import (
    EnergyModule,
    energy_module,
    jax_function,
    parameters_to_jax,
    to_jax,
    to_torch,
)

__all__ = ["EnergyModule", "energy_module", "jax_function", "parameters_to_jax", "to_jax",
           "to_torch"]
