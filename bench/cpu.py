"""Server CPU per turn: CPU seconds of the server's process tree plus every Postgres process.

Read from ``/proc/<pid>/stat``: each process's own user + system time, plus the time of the
children it has already reaped (``cutime``/``cstime``) — so Postgres backends that ended
during a workload (a closed connection) still count, through the postmaster. On 2 noisy
cores this is the figure that counts: turns per second also measure the client.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.server import process_tree

__all__ = ["CpuMeter", "postmaster_pid", "tree_cpu_seconds"]

_TICK = os.sysconf("SC_CLK_TCK")


def _times(pid: int) -> float:
    """``pid``'s CPU seconds, with its reaped children's."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # After "pid (comm)": state is field 0; utime, stime, cutime, cstime are 11..14.
    return sum(int(v) for v in fields[11:15]) / _TICK


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants (reaped ones included)."""
    return sum(_times(p) for p in process_tree(pid))


def postmaster_pid(data_dir: Path) -> int | None:
    """The postmaster of the embedded Postgres in ``data_dir`` (``<dir>/pgdata``)."""
    try:
        return int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class CpuMeter:
    """Server + Postgres CPU seconds; :meth:`per_turn` between two readings."""

    server_pid: int
    postgres_pid: int | None

    def read(self) -> tuple[float, float]:
        """``(server, postgres)`` CPU seconds so far."""
        server = tree_cpu_seconds(self.server_pid)
        postgres = tree_cpu_seconds(self.postgres_pid) if self.postgres_pid else 0.0
        return server, postgres

    @staticmethod
    def per_turn(
        before: tuple[float, float], after: tuple[float, float], turns: int
    ) -> dict[str, float]:
        """Milliseconds of CPU per turn: server, Postgres, and both."""
        server = (after[0] - before[0]) * 1000 / max(turns, 1)
        postgres = (after[1] - before[1]) * 1000 / max(turns, 1)
        return {
            "server_cpu_ms_per_turn": round(server + postgres, 3),
            "server_process_cpu_ms_per_turn": round(server, 3),
            "postgres_cpu_ms_per_turn": round(postgres, 3),
        }
