"""A disk that fills up under a running server, and is freed again.

`small_disk` prefers the real thing: a small tmpfs mounted for the test, filled with a
ballast file until the kernel answers ENOSPC, freed by deleting the ballast. Mounting
needs root (CAP_SYS_ADMIN), which not every container grants; there the fallback is
RLIMIT_FSIZE set on the server process from outside (`prlimit`): its files may not
grow past their size, so writes fail with EFBIG (CPython ignores SIGXFSZ, so the
process is not killed) — the same failed writes as a full disk, seen through another
errno. `Disk.kind` says which one a test got.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

TMPFS_BYTES = 16 * 1024 * 1024
CHUNK = 64 * 1024


@dataclass
class Disk:
    """Where the store lives (`path`), and how to fill and free it."""

    kind: str  # "tmpfs" (real ENOSPC) or "rlimit" (EFBIG from RLIMIT_FSIZE)
    path: Path
    pid: int | None = None  # the server process (the rlimit kind limits it)
    _ballast: Path | None = field(default=None, repr=False)

    def fill(self) -> None:
        if self.kind == "tmpfs":
            self._ballast = self.path / "ballast"
            with self._ballast.open("wb") as ballast:
                try:
                    while True:
                        ballast.write(b"\0" * CHUNK)
                        ballast.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
            return
        assert self.pid is not None, "set Disk.pid to the server's pid first"
        sizes = [p.stat().st_size for p in self.path.iterdir() if p.is_file()]
        _, hard = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (max(sizes), hard))

    def free(self) -> None:
        if self.kind == "tmpfs":
            assert self._ballast is not None
            self._ballast.unlink()
            return
        assert self.pid is not None
        _, hard = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (hard, hard))


@contextlib.contextmanager
def small_disk(workdir: Path) -> Iterator[Disk]:
    """A directory on a small tmpfs when mounting works here, else a plain directory
    whose writers get the rlimit (see the module docstring)."""
    path = workdir / "disk"
    path.mkdir()
    if _mount_tmpfs(path):
        try:
            yield Disk("tmpfs", path)
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
    else:
        yield Disk("rlimit", path)


def _mount_tmpfs(path: Path) -> bool:
    if os.geteuid() != 0:
        return False
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(path)],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
