"""Targets evaluated on Dask workers.

The client sends each worker the config file's path and text, the target's position and the
trained flat indices; a worker builds that one target once (cached per process) and returns its
value, gradient or residuals + Jacobian. The client sums the pieces in target order, so a Dask
fit equals a serial one. Clusters: a LocalCluster (``cluster = "local"``, ``workers``), an
existing scheduler (``cluster = "tcp://host:8786"``), or SLURM / PBS through dask-jobqueue
(``cluster = "slurm"`` / ``"pbs"``, options under ``[parallel.jobqueue]``, scaled to
``workers`` jobs).
"""

from __future__ import annotations

import hashlib

import numpy as np

from chronograd.errors import InputError

_CACHE: dict = {}


def _worker_objective(path, text, k, indices):
    key = (hashlib.sha256(text.encode()).hexdigest(), k, tuple(indices))
    if key not in _CACHE:
        from chronograd.fit.build import build_objective
        from chronograd.fit.config import load_config

        cfg = load_config(path)
        if cfg.text != text:
            raise RuntimeError(f"{path} changed on disk after the fit started")
        _CACHE[key] = build_objective(cfg, only_target=k, indices=np.asarray(indices))[1]
    return _CACHE[key]


def _evaluate(path, text, k, indices, mode, phi):
    obj = _worker_objective(path, text, k, indices)
    fn = {"value": obj.target_value, "grad": obj.target_value_and_grad,
          "jac": obj.target_residuals_and_jacobian}[mode]
    return fn(0, np.asarray(phi))


class DaskRemote:
    """Callable used by ``Evaluator``: one future per target, gathered in order."""

    def __init__(self, cfg, indices):
        self.path, self.text, self.indices = str(cfg.path), cfg.text, [int(i) for i in indices]

    def __call__(self, client, mode, phi, n):
        futures = [client.submit(_evaluate, self.path, self.text, k, self.indices, mode,
                                 np.asarray(phi), pure=False) for k in range(n)]
        return client.gather(futures)


def make_client(cfg):
    """A dask.distributed Client for ``[parallel]``, or None for serial evaluation."""
    par = cfg.parallel
    cluster = par.get("cluster", "none")
    if cluster == "none":
        return None
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - a dependency
        raise InputError("[parallel] needs dask.distributed: pip install 'dask[distributed]'"
                         ) from None
    workers = par.get("workers", 2)
    if workers < 1:
        raise cfg.error("parallel", "workers", message="must be >= 1")
    if cluster == "local":
        lc = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None)
        return Client(lc)
    if cluster in ("slurm", "pbs"):
        try:
            import dask_jobqueue
        except ImportError:
            raise cfg.error("parallel", "cluster", message=f"{cluster!r} needs dask-jobqueue:"
                            " pip install dask-jobqueue") from None
        cls = dask_jobqueue.SLURMCluster if cluster == "slurm" else dask_jobqueue.PBSCluster
        jq = cls(**par.get("jobqueue", {}))
        jq.scale(jobs=workers)
        return Client(jq)
    if "://" in cluster:
        return Client(cluster)
    raise cfg.error("parallel", "cluster", message=f"unknown value {cluster!r}; use none,"
                    " local, slurm, pbs or a scheduler address such as tcp://host:8786")
