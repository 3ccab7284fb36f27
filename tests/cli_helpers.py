"""Running the ``chronograd`` command in this process (fast: no interpreter start per call)."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from chronograd.cli.main import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def one_line_error(self) -> str:
        """The error line, after checking that it is one line with no traceback."""
        assert self.code != 0, (self.out, self.err)
        assert "Traceback" not in self.out + self.err, self.err
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1, self.err
        assert lines[0].startswith("error: "), lines[0]
        return lines[0][len("error: "):]


def run_cli(*args, cwd: Path | None = None) -> Result:
    """``chronograd *args`` in ``cwd``; returns exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.chdir(old)
    return Result(code, out.getvalue(), err.getvalue())


def tree(folder: Path) -> set[str]:
    """Every file and folder below ``folder`` (relative paths)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}
