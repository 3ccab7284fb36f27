"""Gradients of trajectory averages: forward mode (full and windowed), reverse mode (plain and
checkpointed) and central finite differences, all with the noise held fixed.

The loss is L(theta) = (1/F) sum_f O(x_f, box, theta) over F frames saved every ``every``
steps (``average="time"``), or O at the last frame (``average="final"``). The Langevin noise
comes from the key in the state, so every estimator differentiates the same random path
(common random numbers), and they agree to rounding on short horizons.

- forward: ``jax.linearize`` of each step carries the tangent state d(x, v, F, U)/dtheta
  forward, one tangent per selected parameter (batched with vmap): the time-machine recursion
  (Hessian-vector product with the tangent plus the mixed partial, every step). Memory does
  not grow with the horizon; cost grows with the number of parameters.
- windowed: forward mode with the velocity tangent keeping only the last ``window`` steps'
  contributions (Langevin only). Each step's velocity tangent is a (dv_{t-1} + g_{t-1}); the
  injections g are kept in a ring buffer and summed with weights a^age, so contributions
  older than ``window`` steps are dropped from the velocity while what they already moved
  stays in the positions. The error is O(a^window), a = exp(-friction dt).
- reverse: ``jax.grad`` through ``lax.scan``: one backward pass for all parameters; memory
  grows linearly with the horizon.
- checkpointed: reverse mode over segments of ~sqrt(F) frames; only segment starts are
  stored and each segment is recomputed on the way back (``jax.checkpoint``): memory
  O(sqrt(T)), about one extra forward pass of compute.
- finite-difference: central differences of L with the same noise, 2 runs per parameter.

Every call also reports how the tangent norm grows with the horizon (a finite-time Lyapunov
estimate) and a verdict: in chaotic dynamics trajectory derivatives grow like exp(lambda t)
and stop meaning anything useful about ensemble averages (use ``adjoint="ensemble"``).
"""

from __future__ import annotations

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.dynamics.state import MDState
from chronograd.errors import InputError
from chronograd.gradients.common import (
    GradientError,
    GradientResult,
    compiled_memory_bytes,
    flat_params,
    lyapunov_estimate,
    memory_limit_bytes,
    trajectory_verdict,
)
from chronograd.system.forces import force_fn

TRAJECTORY_ESTIMATORS = ("forward", "windowed", "reverse", "checkpointed", "finite-difference")


def _split(s: MDState):
    return ((s.positions, s.velocities, s.forces, s.potential_energy, s.extra),
            (s.box, s.neighbors, s.step, s.key))


def _merge(d, n) -> MDState:
    return MDState(d[0], d[1], d[2], d[3], n[0], n[1], n[2], n[3], d[4])


class _Problem:
    """The loss L(phi) of a trajectory average, and the pieces every estimator needs.

    Only what shapes the program lives here (the integrator, the observable, the horizon and
    the averaging): it is the static argument of the module-level compiled programs below,
    equal and hashed by those, while the start state and theta's flat view are arguments, so
    a second call with a new start, new parameters or a new selection of the same size reuses
    the compiled program (contract 3)."""

    def __init__(self, integrator, observable, n_steps, every, average):
        if every < 1 or n_steps < every or n_steps % every:
            raise InputError(f"n_steps={n_steps} must be a positive multiple of every={every}")
        if average not in ("time", "final"):
            raise InputError(f"average must be 'time' or 'final', got {average!r}")
        self.integ, self.observable = integrator, observable
        self.every, self.n_frames, self.average = int(every), n_steps // every, average
        self.n_steps = int(n_steps)
        self.compute = force_fn(integrator.system, integrator.neighbor_fns)

    def _key(self):  # the integrator by identity (its step function): it holds arrays
        return (self.integ.step, self.observable, self.n_steps, self.every, self.average)

    def __eq__(self, other):
        return isinstance(other, _Problem) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def start(self, state, fp, phi):
        """The initial state with forces and energy recomputed for theta(phi)."""
        s = state
        x, nbrs, u, f = self.compute(s.positions, s.box, fp.params(phi), s.neighbors)
        return s._replace(positions=x, forces=f, potential_energy=u, neighbors=nbrs)

    def frame(self, s, params):
        def one(q, _):
            return self.integ.step(q, params), None

        s = jax.lax.scan(one, s, None, length=self.every)[0]
        o = self.observable(s.positions, s.box, params)
        return s, o

    def step_diff(self, d, n, fp, phi):
        """One integrator step on the differentiable parts ``d`` with the rest ``n`` fixed:
        returns (d', n')."""
        return _split(self.integ.step(_merge(d, n), fp.params(phi)))

    def reduce(self, values):
        return jnp.mean(values) if self.average == "time" else values[-1]

    def loss(self, phi, state, fp):
        params = fp.params(phi)

        def body(s, _):
            return self.frame(s, params)

        s, values = jax.lax.scan(body, self.start(state, fp, phi), None, length=self.n_frames)
        return self.reduce(values), (values, s)

    def checkpointed_loss(self, phi, state, fp, segment: int):
        n_seg, tail = divmod(self.n_frames, segment)
        params = fp.params(phi)

        def body(s, _):
            return self.frame(s, params)

        @jax.checkpoint
        def run_segment(s):
            return jax.lax.scan(body, s, None, length=segment)

        def outer(s, _):
            return run_segment(s)

        s, values = jax.lax.scan(outer, self.start(state, fp, phi), None, length=n_seg)
        values = values.reshape(-1)
        if tail:
            s, rest = jax.checkpoint(
                lambda q: jax.lax.scan(body, q, None, length=tail))(s)
            values = jnp.concatenate([values, rest])
        return self.reduce(values), (values, s)


def _forward(problem: _Problem, window: int | None, decay: float | None, phi, state, fp):
    """Tangents of the whole trajectory: returns (loss, dL/dphi, tangent norms per step)."""
    p = phi.shape[0]
    eye = jnp.eye(p, dtype=phi.dtype)
    d0, lin0 = jax.linearize(lambda ph: _split(problem.start(state, fp, ph))[0], phi)
    n0 = _split(problem.start(state, fp, phi))[1]
    t0 = jax.vmap(lin0)(eye)
    buf0 = None
    if window is not None:
        buf0 = (jnp.zeros((window,) + t0[1].shape, t0[1].dtype), jnp.asarray(0))
        weights_base = jnp.asarray(decay) ** jnp.arange(1, window + 1)

    def one_step(carry, _):
        d, n, t, buf = carry
        (d2, lin, n2) = jax.linearize(lambda dd, ph: problem.step_diff(dd, n, fp, ph), d, phi,
                                      has_aux=True)
        t2 = jax.vmap(lin)(t, eye)
        if buf is not None:
            g_buf, ptr = buf
            g = t2[1] / decay - t[1]
            g_buf = g_buf.at[ptr].set(g)
            age = (ptr - jnp.arange(window)) % window  # 0 for the newest
            w = weights_base[age]
            t2 = (t2[0], jnp.tensordot(w, g_buf, axes=1)) + tuple(t2[2:])
            buf = (g_buf, (ptr + 1) % window)
        norm = jnp.sqrt(jnp.sum(t2[0] ** 2) / p)
        return (d2, n2, t2, buf), norm

    def one_frame(carry, _):
        carry, norms = jax.lax.scan(one_step, carry, None, length=problem.every)
        d, n, t, buf = carry
        box = n[0]
        o, lin_o = jax.linearize(
            lambda x, ph: problem.observable(x, box, fp.params(ph)), d[0], phi)
        do = jax.vmap(lin_o)(t[0], eye)
        return carry, (o, do, norms)

    carry = (d0, n0, t0, buf0)
    carry, (values, dvalues, norms) = jax.lax.scan(one_frame, carry, None,
                                                   length=problem.n_frames)
    if problem.average == "time":
        return jnp.mean(values), jnp.mean(dvalues, axis=0), norms.reshape(-1), carry[1][1]
    return values[-1], dvalues[-1], norms.reshape(-1), carry[1][1]


def _reverse(problem: _Problem, segment: int | None, phi, state, fp):
    if segment is None:
        return jax.value_and_grad(problem.loss, has_aux=True)(phi, state, fp)
    return jax.value_and_grad(problem.checkpointed_loss, has_aux=True)(phi, state, fp, segment)


def _loss_only(problem: _Problem, phi, state, fp):
    return problem.loss(phi, state, fp)[0]


def _probe_norms(problem: _Problem, phi, state, fp, key):
    """Tangent norms along one random direction in the selected parameters (diagnostics
    for reverse mode and finite differences)."""
    direction = jax.random.normal(key, phi.shape, phi.dtype)
    direction = direction / jnp.linalg.norm(direction)
    s0, t0 = jax.jvp(lambda ph: _split(problem.start(state, fp, ph))[0], (phi,), (direction,))
    n0 = _split(problem.start(state, fp, phi))[1]

    def one(carry, _):
        d, n, t = carry
        d2, t2, n2 = jax.jvp(lambda dd, ph: problem.step_diff(dd, n, fp, ph), (d, phi),
                             (t, direction), has_aux=True)
        return (d2, n2, t2), jnp.linalg.norm(t2[0])

    return jax.lax.scan(one, (s0, n0, t0), None, length=problem.n_steps)[1]


# Module level: the problem and options are static, the start state, theta and phi are
# arguments; compiled once per problem, options and shapes.
_LOSS = jax.jit(_loss_only, static_argnums=0)
_PROBE = jax.jit(_probe_norms, static_argnums=0)
_PLANS: collections.OrderedDict = collections.OrderedDict()  # the last few compiled plans
_N_PLANS = 16


def _avals(args):
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return treedef, tuple((np.shape(a), str(jnp.result_type(a))) for a in leaves)


def _compile_checked(fn, static: tuple, args: tuple, what: str, limit_gb, advice: str):
    """``fn(*static, *args)`` compiled once per static part and argument shapes (kept, with
    XLA's memory estimate, for the next call), refused when it needs more than the limit."""
    key = (fn, static, _avals(args))
    plan = _PLANS.get(key)
    if plan is None:
        compiled = jax.jit(fn, static_argnums=tuple(range(len(static)))).lower(
            *static, *args).compile()
        plan = _PLANS[key] = (compiled, compiled_memory_bytes(compiled))
        while len(_PLANS) > _N_PLANS:
            _PLANS.popitem(last=False)
    _PLANS.move_to_end(key)
    compiled, need = plan
    limit = memory_limit_bytes(limit_gb)
    if need is not None and need > limit:
        raise GradientError(
            f"{what} needs ~{need / 2 ** 30:.2f} GiB, more than the memory limit"
            f" {limit / 2 ** 30:.2f} GiB; {advice}")
    return compiled, need


def trajectory_gradient(integrator, state: MDState, n_steps: int, observable, *,
                        adjoint: str = "forward", params=None, wrt=None, every: int = 1,
                        average: str = "time", window: int | None = None,
                        segment: int | None = None, fd_step: float = 1e-6,
                        diagnostics: bool = True, memory_limit_gb: float | None = None,
                        diagnostics_key=None) -> GradientResult:
    """d/dtheta of a trajectory average of ``observable`` with the noise fixed by the key.

    Args:
        integrator, state: from ``chronograd.dynamics`` (the state's positions, velocities
            and key are the fixed start; its forces are recomputed for theta).
        n_steps: horizon; frames every ``every`` steps.
        observable: ``O(positions, box, params) -> scalar`` (chronograd.observables).
        adjoint: "forward", "windowed", "reverse", "checkpointed" or "finite-difference".
        wrt: entries of theta to differentiate (mask pytree, flat indices, or None = all).
        window: steps kept by "windowed" forward mode.
        segment: frames per checkpointed segment (default ~sqrt(frames)).
        memory_limit_gb: refuse plans XLA says need more (default half the RAM).
    Returns:
        GradientResult with tangent-norm growth, a Lyapunov estimate and a verdict.
    """
    if adjoint not in TRAJECTORY_ESTIMATORS:
        raise InputError(f"adjoint must be one of {', '.join(TRAJECTORY_ESTIMATORS)}; got"
                         f" {adjoint!r}")
    if getattr(state.box, "shape", None) is not None and "baro_max_dv" in state.extra:
        raise InputError("trajectory gradients do not differentiate the Monte Carlo barostat;"
                         " use adjoint='ensemble' for NPT averages")
    problem = _Problem(integrator, observable, n_steps, every, average)
    fp = flat_params(integrator.system.params if params is None else params, wrt)
    if state.neighbors is not None:
        state = state._replace(neighbors=integrator.neighbor_fns.rebuild(
            state.positions, state.neighbors, state.box))
    phi = fp.phi0
    o_shape = jax.eval_shape(lambda: observable(state.positions, state.box,
                                                fp.params(phi))).shape
    if o_shape != ():
        raise InputError(f"trajectory gradients need a scalar observable; this one returns"
                         f" shape {o_shape} (reduce it, e.g. with jnp.mean or a loss)")
    dt = float(integrator.timestep)
    diag: dict = {"horizon_steps": n_steps, "horizon_ps": n_steps * dt,
                  "parameters": int(phi.shape[0])}
    norms = None
    if adjoint in ("forward", "windowed"):
        decay = None
        if adjoint == "forward":
            window = None
        else:
            decay = getattr(integrator, "decay", None)
            if decay is None or not 0 < decay < 1:
                raise InputError("windowed forward mode needs a Langevin integrator (velocity"
                                 " memory decays as exp(-friction dt)); use adjoint='forward'")
            if window is None or int(window) < 1:
                raise InputError("adjoint='windowed' needs window=k steps (k >= 1)")
            window, decay = int(window), float(decay)
            diag["window"] = window
            diag["truncation"] = float(decay ** window)
        compiled, need = _compile_checked(
            _forward, (problem, window, decay), (phi, state, fp),
            f"{adjoint} mode with {phi.shape[0]} tangents", memory_limit_gb,
            "select fewer parameters with wrt=..., or use adjoint='checkpointed' (one"
            " backward pass for all parameters)")
        value, grad, norms, nbrs = compiled(phi, state, fp)
    elif adjoint in ("reverse", "checkpointed"):
        seg = None
        if adjoint == "reverse":
            advice = ("use adjoint='checkpointed' (memory ~sqrt(T)) or adjoint='forward'"
                      " (memory independent of T)")
        else:
            seg = int(segment) if segment else max(1, int(round(math.sqrt(problem.n_frames))))
            diag["segment_frames"] = seg
            advice = ("use adjoint='forward' (memory independent of T) or a shorter horizon")
        compiled, need = _compile_checked(_reverse, (problem, seg), (phi, state, fp),
                                          f"{adjoint} mode over {n_steps} steps",
                                          memory_limit_gb, advice)
        (value, (_, last)), grad = compiled(phi, state, fp)
        nbrs = last.neighbors
    else:
        def loss(ph):
            return _LOSS(problem, ph, state, fp)

        value = loss(phi)
        grad = np.zeros(phi.shape[0])
        for k in range(phi.shape[0]):
            h = fd_step * (abs(float(phi[k])) or 1.0)  # relative: epsilons can be ~1e-5
            grad[k] = (float(loss(phi.at[k].add(h))) - float(loss(phi.at[k].add(-h)))) / (2 * h)
        need, nbrs = None, None
    if nbrs is not None and bool(nbrs.did_overflow):
        raise GradientError("the neighbor list overflowed during the differentiated run;"
                            " allocate the state's list with a larger max_neighbors")
    value = float(value)
    grad = np.asarray(grad, np.float64)
    if not np.isfinite(value) or not np.all(np.isfinite(grad)):
        raise GradientError(
            f"the {adjoint} gradient is not finite (value {value}); the observable or the"
            " dynamics produced NaN/inf: check the observable on these frames, the timestep,"
            " and the horizon (tangents of chaotic runs overflow)")
    if diagnostics:
        if norms is None:
            key = jax.random.key(0) if diagnostics_key is None else diagnostics_key
            norms = _PROBE(problem, phi, state, fp, key)
        norms = np.asarray(norms)
        lyap = lyapunov_estimate(norms, dt)
        diag.update(tangent_norm=norms, lyapunov_per_ps=lyap,
                    tangent_growth=float(np.exp(lyap * n_steps * dt)))
        verdict = trajectory_verdict(lyap, n_steps * dt)
    else:
        verdict = "no diagnostics requested"
    if need is not None:
        diag["memory_bytes"] = need
    return GradientResult(value, fp.to_pytree(grad), grad, fp.indices, None,
                          diag, verdict, adjoint)
