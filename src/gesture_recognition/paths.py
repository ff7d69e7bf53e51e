"""How files name paths: relative to the repository, never the machine's absolute layout."""

from __future__ import annotations

import os
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
