"""Mass-action kinetics of reversible reaction networks, integrated with diffrax and
differentiable in the rate constants (kinetic pathways of self-assembly: Jhaveri, Loggia, Qian,
Rotskoff & Covert, PNAS 2024).

    net = ReactionNetwork.parse(["A", "B", "C", "AB", "BC", "AC", "ABC"],
                                ["A + B <-> AB", "B + C <-> BC", ..., "AB + C <-> ABC"])
    c = concentrations(net, c0, k_on, k_d, t_stop)           # [S] at t_stop
    jax.grad(lambda k: concentrations(net, c0, k, k_d, t)[-1])(k_on)

Each reaction r is reversible: forward flux k_on[r] prod c[reactants], backward flux
k_off[r] prod c[products] with k_off = k_on K_d, so changing a rate constant at fixed
dissociation constant K_d (fixed binding free energy, K_d = exp(dG / kT) in concentration
units) changes the pathway, never the equilibrium. Integration: Kvaerno5 (stiff-stable, as fast
and slow binding mix) with adaptive steps; reverse-mode gradients go through the solver with
diffrax's checkpointed adjoint. Units are whatever c0 and k_on use (e.g. uM and 1/(uM s)).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError


@dataclass(frozen=True)
class ReactionNetwork:
    """Species names and reversible reactions (reactant indices, product indices)."""

    species: tuple[str, ...]
    reactions: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]

    @classmethod
    def parse(cls, species, reactions) -> ReactionNetwork:
        """From names and strings like ``"A + B <-> AB"`` (unknown names are errors)."""
        species = tuple(species)
        if len(set(species)) != len(species) or not species:
            raise InputError(f"species must be distinct names, got {list(species)}")
        index = {s: k for k, s in enumerate(species)}
        parsed = []
        for r, text in enumerate(reactions):
            sides = [s.strip() for s in str(text).split("<->")]
            if len(sides) != 2 or not all(sides):
                raise InputError(f"reaction {r} {text!r}: write it as 'A + B <-> AB'")
            both = []
            for side in sides:
                names = [n.strip() for n in re.split(r"\+", side)]
                unknown = [n for n in names if n not in index]
                if unknown:
                    raise InputError(f"reaction {r} {text!r}: unknown species {unknown[0]!r}"
                                     f" (species: {', '.join(species)})")
                both.append(tuple(index[n] for n in names))
            parsed.append(tuple(both))
        if not parsed:
            raise InputError("a reaction network needs at least one reaction")
        return cls(species, tuple(parsed))

    @property
    def n_reactions(self) -> int:
        return len(self.reactions)

    def stoichiometry(self) -> np.ndarray:
        """[S, R] products minus reactants."""
        s = np.zeros((len(self.species), self.n_reactions))
        for r, (lhs, rhs) in enumerate(self.reactions):
            for k in lhs:
                s[k, r] -= 1
            for k in rhs:
                s[k, r] += 1
        return s

    def rhs(self, c, k_on, k_off):
        """dc/dt [S] of concentrations c [S]."""
        fwd = jnp.stack([jnp.prod(c[jnp.asarray(lhs)]) for lhs, _ in self.reactions])
        bwd = jnp.stack([jnp.prod(c[jnp.asarray(rhs)]) for _, rhs in self.reactions])
        return jnp.asarray(self.stoichiometry()) @ (k_on * fwd - k_off * bwd)


def check_rates(network: ReactionNetwork, values, what: str) -> np.ndarray:
    """InputError unless ``values`` holds one positive finite number per reaction."""
    v = np.asarray(values, np.float64)
    if v.shape != (network.n_reactions,):
        raise InputError(f"{what}: expected {network.n_reactions} values (one per reaction),"
                         f" got shape {v.shape}")
    bad = np.flatnonzero(~np.isfinite(v) | (v <= 0))
    if bad.size:
        raise InputError(f"{what}: reaction {bad[0]} has {v[bad[0]]}; rate and equilibrium"
                         " constants must be positive and finite")
    return v


def concentrations(network: ReactionNetwork, c0, k_on, k_d, t_stop, *, times=None,
                   rtol: float = 1e-8, atol: float = 1e-12, max_steps: int = 100000):
    """Concentrations [S] at ``t_stop`` (or [T, S] at ``times``) from ``c0`` [S], with
    forward rates ``k_on`` [R] and dissociation constants ``k_d`` [R] (k_off = k_on k_d).
    Pure and differentiable in c0, k_on and k_d; validate inputs with ``check_rates`` at the
    edge (this function is traced)."""
    import diffrax

    k_on = jnp.asarray(k_on)
    k_off = k_on * jnp.asarray(k_d)
    term = diffrax.ODETerm(lambda t, c, args: network.rhs(c, *args))
    saveat = diffrax.SaveAt(t1=True) if times is None else diffrax.SaveAt(ts=jnp.asarray(times))
    sol = diffrax.diffeqsolve(
        term, diffrax.Kvaerno5(), 0.0, t_stop, None, jnp.asarray(c0), args=(k_on, k_off),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), saveat=saveat,
        max_steps=max_steps, adjoint=diffrax.RecursiveCheckpointAdjoint())
    return sol.ys[0] if times is None else sol.ys


def dimer_closed_form(c0, k_on, k_d, t):
    """[AB](t) for A + B <-> AB from [A] = [B] = c0, [AB] = 0: dx/dt = k_on (x - x1)(x - x2)
    with roots x1 < x2 of (c0 - x)^2 = k_d x, so x = x1 x2 (1 - E) / (x2 - x1 E),
    E = exp(-k_on (x2 - x1) t)."""
    b = 2.0 * c0 + k_d
    disc = jnp.sqrt(b * b - 4.0 * c0 * c0)
    x1, x2 = 0.5 * (b - disc), 0.5 * (b + disc)
    e = jnp.exp(-k_on * (x2 - x1) * t)
    return x1 * x2 * (1.0 - e) / (x2 - x1 * e)


jax.tree_util.register_static(ReactionNetwork)
