"""chronograd as a layer in PyTorch: DLPack tensors in and out, JAX gradients as torch autograd.

- :func:`jax_function` turns any JAX function of arrays (a system energy, a trajectory
  observable, a fit loss) into a callable on torch tensors with a ``torch.autograd.Function``
  whose backward is the JAX vector-Jacobian product. Forward and VJP are each compiled once
  (``jax.vjp`` inside ``jax.jit``; the VJP closure is a pytree passed between them).
- :func:`energy_module` makes a ``torch.nn.Module`` of a System: ``forward(positions,
  box=None, params=None)`` gives the potential energy (kJ/mol, a 0-d tensor) with autograd to
  the positions, the box and the system's parameters, which are the module's parameters,
  named by term (or handler) and attribute, e.g. ``theta.Bonds.k``. ``params=`` overrides any
  of them with tensors from elsewhere -- e.g. the output of a torch model that assigns
  parameters (espaloma-style) -- and gradients flow back into that model.

Tensors cross by DLPack (``torch.utils.dlpack`` / ``jax.dlpack``): no copy when both
frameworks see the same device and the memory is contiguous. Positions and parameters must be
float64 on the device JAX computes on; anything else is refused with a message saying what was
expected. torch is an optional dependency (``pip install chronograd[torch]``);
``import chronograd`` never imports it.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError

try:
    import torch
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("chronograd.torch needs PyTorch: pip install 'chronograd[torch]'") \
        from err


def _jax_platform() -> str:
    return {"gpu": "cuda", "cuda": "cuda", "rocm": "cuda"}.get(jax.default_backend(), "cpu")


def to_jax(tensor: torch.Tensor):
    """A JAX array sharing ``tensor``'s memory (DLPack; copied only if not contiguous)."""
    t = tensor.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    return jax.dlpack.from_dlpack(t)


def to_torch(array) -> torch.Tensor:
    """A torch tensor sharing ``array``'s memory (DLPack)."""
    return torch.utils.dlpack.from_dlpack(jnp.asarray(array))


def check_tensor(tensor, name: str, shape: tuple | None = None) -> None:
    """InputError unless ``tensor`` is a float64 torch tensor of ``shape`` (None entries: any
    size) on the device JAX computes on."""
    if not isinstance(tensor, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    want_dev = _jax_platform()
    problems = []
    if shape is not None and (tensor.ndim != len(shape) or any(
            s is not None and s != t for s, t in zip(shape, tensor.shape, strict=False))):
        shown = tuple("N" if s is None else s for s in shape)
        problems.append(f"shape {tuple(tensor.shape)} (expected {shown})")
    if tensor.dtype != torch.float64:
        problems.append(f"dtype {tensor.dtype} (expected torch.float64; use .double())")
    if tensor.device.type != want_dev:
        problems.append(f"device {tensor.device} (expected {want_dev}, where JAX computes;"
                        f" use .to('{want_dev}'))")
    if problems:
        raise InputError(f"{name}: " + "; ".join(problems))


class _JaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, forward_vjp, backward, n_out, *inputs):
        out, vjp = forward_vjp(*(to_jax(t) for t in inputs))
        ctx.vjp, ctx.backward_fn = vjp, backward
        outs = tuple(to_torch(o) for o in (out if n_out else (out,)))
        return outs if n_out else outs[0]

    @staticmethod
    def backward(ctx, *grads):
        cts = tuple(to_jax(g.contiguous()) for g in grads)
        g = ctx.backward_fn(ctx.vjp, cts if len(cts) > 1 else cts[0])
        return (None, None, None, *(to_torch(x) for x in g))


def jax_function(fn, *, n_outputs: int = 0):
    """``fn(*arrays) -> array`` (or a tuple of ``n_outputs`` arrays) as a function of torch
    tensors differentiable by torch autograd (first derivatives).

    The forward pass runs ``jax.vjp(fn, ...)`` compiled once per input shapes; the backward
    pass applies the saved VJP (compiled once too). Inputs are float64 tensors on JAX's
    device; outputs come back as tensors sharing JAX's memory.
    """
    forward_vjp = jax.jit(lambda *xs: jax.vjp(fn, *xs))
    backward = jax.jit(lambda vjp, ct: vjp(ct))

    def apply(*tensors):
        for k, t in enumerate(tensors):
            check_tensor(t, f"argument {k}")
        return _JaxFunction.apply(forward_vjp, backward, n_outputs, *tensors)

    apply.__doc__ = f"torch version of {getattr(fn, '__name__', 'a JAX function')}"
    return apply


def _name(key) -> str:
    text = re.sub(r"\W+", "_", str(getattr(key, "key", getattr(key, "idx", getattr(
        key, "name", key)))))
    return text.strip("_") or "_"


class _Node(torch.nn.Module):
    """A level of the parameter tree: dict keys become submodules or parameters."""


def _paths(tree) -> list[tuple[tuple[str, ...], object]]:
    """(names path, leaf) of every array leaf; dict levels keep their keys, other pytree
    levels (e.g. an equinox network) are joined into one name."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names, tail = [], []
        for k in path:
            if isinstance(k, jax.tree_util.DictKey) and not tail:
                names.append(_name(k))
            else:
                tail.append(_name(k))
        if tail:
            names.append("_".join(tail))
        out.append((tuple(names), leaf))
    return out


class EnergyModule(torch.nn.Module):
    """A System as a torch module (see :func:`energy_module`)."""

    def __init__(self, system, *, prefix: str = "theta"):
        super().__init__()
        self.system = system
        self._energy = jax_function(_energy_of(system))
        leaves, self._treedef = jax.tree_util.tree_flatten(system.params)
        self._paths = [p for p, _ in _paths(system.params)]
        root = _Node()
        for path, leaf in zip(self._paths, leaves, strict=True):
            node = root
            for key in path[:-1]:
                if not hasattr(node, key):
                    node.add_module(key, _Node())
                node = getattr(node, key)
            value = torch.tensor(np.asarray(leaf, np.float64))
            node.register_parameter(path[-1], torch.nn.Parameter(value))
        self.add_module(prefix, root)
        self._prefix = prefix

    def parameter_path(self, path: tuple[str, ...]) -> str:
        return ".".join((self._prefix, *path))

    def forward(self, positions, box=None, params=None):
        """Potential energy (kJ/mol, 0-d float64 tensor).

        Args:
            positions: [N, 3] nm, float64, on JAX's device.
            box: [3, 3] nm, or None for the system's own box (periodic systems).
            params: optional nested dict of tensors (same keys as the system's parameter
                tree) replacing the module's parameters of the same names.
        """
        n = self.system.n_atoms
        check_tensor(positions, "positions", (n, 3))
        if box is None and self.system.periodic:
            if self.system.box is None:
                raise InputError("this system is periodic and has no default box: pass box")
            box = torch.tensor(np.asarray(self.system.box, np.float64),
                               device=positions.device)
        if box is not None and not self.system.periodic:
            raise InputError("box: this system is not periodic; pass box=None")
        if box is not None:
            check_tensor(box, "box", (3, 3))
        leaves = []
        for path in self._paths:
            value = _lookup(params, path) if params is not None else None
            leaves.append(self.get_parameter(self.parameter_path(path)) if value is None
                          else value)
        for path, t in zip(self._paths, leaves, strict=True):
            check_tensor(t, "parameter " + ".".join(path))
        if box is None:
            return self._energy(positions, *leaves)
        return self._energy(positions, box, *leaves)


def _energy_of(system):
    treedef = jax.tree_util.tree_structure(system.params)
    U = system.energy_fn()

    def energy(x, *rest):
        if system.periodic:
            box, leaves = rest[0], rest[1:]
        else:
            box, leaves = None, rest
        return U(x, box, jax.tree_util.tree_unflatten(treedef, list(leaves)))

    return energy


def _lookup(tree, path):
    node = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, torch.Tensor) else None


def energy_module(system, *, prefix: str = "theta") -> EnergyModule:
    """A ``torch.nn.Module`` computing ``system``'s potential energy; its parameters are the
    system's parameter tree (``module.named_parameters()`` -> ``theta.Bonds.k``, ...)."""
    return EnergyModule(system, prefix=prefix)


def parameters_to_jax(module: EnergyModule):
    """The module's current parameters as the system's parameter pytree (JAX arrays)."""
    leaves = [to_jax(module.get_parameter(module.parameter_path(p))) for p in module._paths]
    return jax.tree_util.tree_unflatten(module._treedef, leaves)
