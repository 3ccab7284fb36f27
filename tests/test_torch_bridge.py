"""The PyTorch bridge checks (tests/torch_bridge_checks.py) in a pytest process of their own.

torch and jaxlib both carry large native runtimes; once, in a full-suite run, a worker that
had imported torch crashed inside XLA's executable serialization for the persistent
compilation cache (not reproduced since). Keeping torch out of the suite's long-lived workers
removes that risk from every other test; a failure here prints the checks' own report.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("which", [
    "not slow",  # the default suite: all but the trajectory gradcheck (~20 s of compiling)
    pytest.param("slow or not slow", marks=pytest.mark.slow)])
def test_torch_bridge_checks_pass_in_their_own_process(which):
    # torch is a test dependency (pyproject [test]); find_spec does not import it here
    assert importlib.util.find_spec("torch") is not None, "pip install -e '.[test]'"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "-m", which,
         str(HERE / "torch_bridge_checks.py")],
        capture_output=True, text=True, cwd=HERE.parent, timeout=1800,
        # no persistent compilation cache writes beside torch (where the crash was)
        env={**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"})
    report = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, report
    assert " passed" in result.stdout and "skipped" not in result.stdout, report
