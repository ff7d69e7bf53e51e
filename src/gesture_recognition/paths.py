"""Where reports say they come from: paths relative to the repository (never the machine's
absolute layout) and the commit of the checkout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shown_path(path: str | Path, root: Path = REPO_ROOT) -> str:
    """``path`` relative to the repository, ``../x`` beside it (like ``../shared/data``), else
    its last part. Tried both as written and with symlinks resolved, since either side may
    reach the same folder through a link."""
    given = Path(path)
    candidates = (Path(os.path.abspath(given)), given.resolve())
    bases = (Path(os.path.abspath(root)), root.resolve())
    for candidate in candidates:
        for base in bases:
            for anchor, prefix in ((base, Path()), (base.parent, Path(".."))):
                try:
                    return str(prefix / candidate.relative_to(anchor))
                except ValueError:
                    continue
    return given.name


def git_commit(repo: Path = REPO_ROOT) -> str:
    """Short commit, ``-dirty`` when tracked files differ from it (numbers of unsaved code);
    ``unknown`` outside a git checkout."""
    try:
        return subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=7"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
