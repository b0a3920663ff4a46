"""Real ``sessiongraph serve`` processes for tests: start, wait for /readyz, stop.

Each server is ``python -m api.cli serve`` from the project root, on a free loopback port,
with its output in a log file that failures quote. The environment is this process's minus
every sessiongraph and database setting, plus what the test passes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "ServeProcess",
    "clean_env",
    "free_port",
    "free_ports",
    "serve_process",
    "serve_processes",
    "start_serve",
]

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any sessiongraph or database settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SESSIONGRAPH_")
        and k not in {"DATABASE_URL", "OPENAI_API_KEY", "PYTHONPATH"}
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports nothing listens on right now."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@dataclass
class ServeProcess:
    """A running ``sessiongraph serve``."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll /readyz until it answers 200; fail with the log if the process dies."""
        deadline = time.monotonic() + timeout
        last: str = "no answer"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(f"serve on :{self.port} exited {code}:\n{self.log()}")
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=5)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise AssertionError(
            f"serve on :{self.port} not ready after {timeout:.0f} s ({last}):\n{self.log()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGINT, then wait; SIGKILL the process group if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        return self.proc.returncode


def start_serve(
    log_path: Path, env: dict[str, str], port: int | None = None, cwd: Path = ROOT
) -> ServeProcess:
    """Start ``python -m api.cli serve`` on 127.0.0.1 in ``cwd`` (not waiting for it to be
    ready); from another folder, it serves that folder's ``langgraph.json``."""
    port = port or free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServeProcess(proc=proc, port=port, log_path=log_path)


@contextmanager
def serve_process(log_path: Path, env: dict[str, str], cwd: Path = ROOT) -> Iterator[ServeProcess]:
    """One ready server; always stopped on exit."""
    with serve_processes([log_path], env, cwd) as [server]:
        yield server


@contextmanager
def serve_processes(
    log_paths: list[Path], env: dict[str, str], cwd: Path = ROOT
) -> Iterator[list[ServeProcess]]:
    """Several servers started at once (one per log path), all ready; all stopped on exit."""
    with ExitStack() as stack:
        servers: list[ServeProcess] = []
        for log_path, port in zip(log_paths, free_ports(len(log_paths)), strict=True):
            server = start_serve(log_path, env, port, cwd)
            stack.callback(server.stop)
            servers.append(server)
        for server in servers:
            server.wait_ready()
        yield servers
