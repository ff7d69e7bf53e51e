"""Type-check every part of the installed ``gesture_recognition`` package with mypy.

The brief puts ``training/``, ``export/``, ``client/`` and ``benchmarks/`` at the top of the
repository while they install as sub-packages of ``gesture_recognition`` (``package-dir`` in
pyproject.toml). mypy cannot follow that mapping (nor setuptools' editable-install finder), so
this lays the installed layout out as symlinks in a temporary folder, checks it there as one
package, and reports every error at its path in the repository.

    python scripts/typecheck.py [extra mypy arguments]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "gesture_recognition"


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """Installed package name -> its folder in the repository, from setuptools' package-dir."""
    mapping: dict[str, str] = tomllib.loads(pyproject.read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    dirs = {PACKAGE: ROOT / mapping[""] / PACKAGE}
    for name, folder in mapping.items():
        if not name:
            continue
        parent, _, leaf = name.rpartition(".")
        if parent != PACKAGE or not leaf:
            raise SystemExit(f"typecheck: cannot lay out package-dir entry {name!r}")
        dirs[name] = ROOT / folder
    return dirs


def lay_out(dirs: dict[str, Path], tree: Path) -> None:
    """The installed tree under ``tree``: the core package's files, the mapped sub-packages."""
    top = tree / PACKAGE
    top.mkdir()
    for child in dirs[PACKAGE].iterdir():
        if child.name != "__pycache__":
            (top / child.name).symlink_to(child)
    for name, folder in dirs.items():
        if name != PACKAGE:
            (top / name.rpartition(".")[2]).symlink_to(folder, target_is_directory=True)


def to_repo_path(line: str, dirs: dict[str, Path]) -> str:
    """Rewrite a mypy line's leading ``gesture_recognition/...`` path to the repository's."""
    prefixes = sorted(
        ((name.replace(".", "/") + "/", folder) for name, folder in dirs.items()),
        key=lambda item: -len(item[0]),
    )
    for prefix, folder in prefixes:
        if line.startswith(prefix):
            return f"{folder.relative_to(ROOT).as_posix()}/{line[len(prefix) :]}"
    return line


def main(argv: list[str]) -> int:
    pyproject = ROOT / "pyproject.toml"
    dirs = package_dirs(pyproject)
    with tempfile.TemporaryDirectory(prefix="typecheck-") as tmp:
        lay_out(dirs, Path(tmp))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--config-file",
                str(pyproject),
                "--cache-dir",
                str(ROOT / ".mypy_cache"),
                "-p",
                PACKAGE,
                *argv,
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
    for line in proc.stdout.splitlines():
        print(to_repo_path(line, dirs))
    sys.stderr.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
