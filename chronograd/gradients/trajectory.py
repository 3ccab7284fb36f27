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
    """The loss L(phi) of a trajectory average, and the pieces every estimator needs."""

    def __init__(self, integrator, state, n_steps, observable, params, wrt, every, average):
        system = integrator.system
        if state.neighbors is not None:
            state = state._replace(neighbors=integrator.neighbor_fns.rebuild(
                state.positions, state.neighbors, state.box))
        if every < 1 or n_steps < every or n_steps % every:
            raise InputError(f"n_steps={n_steps} must be a positive multiple of every={every}")
        if average not in ("time", "final"):
            raise InputError(f"average must be 'time' or 'final', got {average!r}")
        self.integ, self.state, self.observable = integrator, state, observable
        self.every, self.n_frames, self.average = int(every), n_steps // every, average
        self.n_steps = int(n_steps)
        self.fp = flat_params(system.params if params is None else params, wrt)
        self.compute = force_fn(system, integrator.neighbor_fns)

    def start(self, phi):
        """The initial state with forces and energy recomputed for theta(phi)."""
        s = self.state
        x, nbrs, u, f = self.compute(s.positions, s.box, self.fp.params(phi), s.neighbors)
        return s._replace(positions=x, forces=f, potential_energy=u, neighbors=nbrs)

    def frame(self, s, phi):
        params = self.fp.params(phi)

        def one(q, _):
            return self.integ.step(q, params), None

        s = jax.lax.scan(one, s, None, length=self.every)[0]
        o = self.observable(s.positions, s.box, params)
        return s, o

    def step_diff(self, d, n, phi):
        """One integrator step on the differentiable parts ``d`` with the rest ``n`` fixed:
        returns (d', n')."""
        return _split(self.integ.step(_merge(d, n), self.fp.params(phi)))

    def reduce(self, values):
        return jnp.mean(values) if self.average == "time" else values[-1]

    def loss(self, phi):
        def body(s, _):
            s, o = self.frame(s, phi)
            return s, o

        s, values = jax.lax.scan(body, self.start(phi), None, length=self.n_frames)
        return self.reduce(values), (values, s)

    def checkpointed_loss(self, phi, segment: int):
        n_seg, tail = divmod(self.n_frames, segment)

        def body(s, _):
            return self.frame(s, phi)

        @jax.checkpoint
        def run_segment(s):
            return jax.lax.scan(body, s, None, length=segment)

        def outer(s, _):
            return run_segment(s)

        s, values = jax.lax.scan(outer, self.start(phi), None, length=n_seg)
        values = values.reshape(-1)
        if tail:
            s, rest = jax.checkpoint(
                lambda q: jax.lax.scan(body, q, None, length=tail))(s)
            values = jnp.concatenate([values, rest])
        return self.reduce(values), (values, s)


def _forward(problem: _Problem, phi, window: int | None, decay: float | None):
    """Tangents of the whole trajectory: returns (loss, dL/dphi, tangent norms per step)."""
    p = phi.shape[0]
    eye = jnp.eye(p, dtype=phi.dtype)
    fp = problem.fp
    d0, lin0 = jax.linearize(lambda ph: _split(problem.start(ph))[0], phi)
    n0 = _split(problem.start(phi))[1]
    t0 = jax.vmap(lin0)(eye)
    buf0 = None
    if window is not None:
        buf0 = (jnp.zeros((window,) + t0[1].shape, t0[1].dtype), jnp.asarray(0))
        weights_base = jnp.asarray(decay) ** jnp.arange(1, window + 1)

    def one_step(carry, _):
        d, n, t, buf = carry
        (d2, lin, n2) = jax.linearize(lambda dd, ph: problem.step_diff(dd, n, ph), d, phi,
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


def _probe_norms(problem: _Problem, phi, key):
    """Tangent norms along one random direction in the selected parameters (diagnostics
    for reverse mode and finite differences)."""
    direction = jax.random.normal(key, phi.shape, phi.dtype)
    direction = direction / jnp.linalg.norm(direction)
    s0, t0 = jax.jvp(lambda ph: _split(problem.start(ph))[0], (phi,), (direction,))
    n0 = _split(problem.start(phi))[1]

    def one(carry, _):
        d, n, t = carry
        d2, t2, n2 = jax.jvp(lambda dd, ph: problem.step_diff(dd, n, ph), (d, phi),
                             (t, direction), has_aux=True)
        return (d2, n2, t2), jnp.linalg.norm(t2[0])

    return jax.lax.scan(one, (s0, n0, t0), None, length=problem.n_steps)[1]


def _compile_checked(fn, args, what: str, limit_gb, advice: str):
    compiled = jax.jit(fn).lower(*args).compile()
    need = compiled_memory_bytes(compiled)
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
    problem = _Problem(integrator, state, n_steps, observable, params, wrt, every, average)
    phi = problem.fp.phi0
    o_shape = jax.eval_shape(lambda: observable(state.positions, state.box,
                                                problem.fp.params(phi))).shape
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
            window = int(window)
            diag["window"] = window
            diag["truncation"] = float(decay ** window)
        compiled, need = _compile_checked(
            lambda ph: _forward(problem, ph, window, decay), (phi,),
            f"{adjoint} mode with {phi.shape[0]} tangents", memory_limit_gb,
            "select fewer parameters with wrt=..., or use adjoint='checkpointed' (one"
            " backward pass for all parameters)")
        value, grad, norms, nbrs = compiled(phi)
    elif adjoint in ("reverse", "checkpointed"):
        if adjoint == "reverse":
            fn = jax.value_and_grad(problem.loss, has_aux=True)
            advice = ("use adjoint='checkpointed' (memory ~sqrt(T)) or adjoint='forward'"
                      " (memory independent of T)")
        else:
            seg = int(segment) if segment else max(1, int(round(math.sqrt(problem.n_frames))))
            diag["segment_frames"] = seg
            fn = jax.value_and_grad(lambda ph: problem.checkpointed_loss(ph, seg),
                                    has_aux=True)
            advice = ("use adjoint='forward' (memory independent of T) or a shorter horizon")
        compiled, need = _compile_checked(fn, (phi,), f"{adjoint} mode over {n_steps} steps",
                                          memory_limit_gb, advice)
        (value, (_, last)), grad = compiled(phi)
        nbrs = last.neighbors
    else:
        loss = jax.jit(lambda ph: problem.loss(ph)[0])
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
            norms = jax.jit(lambda ph: _probe_norms(problem, ph, key))(phi)
        norms = np.asarray(norms)
        lyap = lyapunov_estimate(norms, dt)
        diag.update(tangent_norm=norms, lyapunov_per_ps=lyap,
                    tangent_growth=float(np.exp(lyap * n_steps * dt)))
        verdict = trajectory_verdict(lyap, n_steps * dt)
    else:
        verdict = "no diagnostics requested"
    if need is not None:
        diag["memory_bytes"] = need
    return GradientResult(value, problem.fp.to_pytree(grad), grad, problem.fp.indices, None,
                          diag, verdict, adjoint)
