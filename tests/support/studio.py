"""A real ``langgraph dev`` (LangGraph's in-memory dev server) on a project's langgraph.json.

Started offline (no browser, no reload, telemetry and version checks off), with no model
keys, on a free loopback port; its whole process group ends afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.processes import free_port

__all__ = ["langgraph_dev", "studio_env"]

LANGGRAPH = Path(sys.executable).with_name("langgraph")
START_TIMEOUT = 90.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def studio_env() -> dict[str, str]:
    """The environment minus model keys and database settings, with telemetry off."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SESSIONGRAPH_", "LANGSMITH_", "LANGCHAIN_"))
        and k not in {"DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"}
    }
    env.update(
        {
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
            "LANGGRAPH_NO_VERSION_CHECK": "true",
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _tail(path: Path, chars: int = 6000) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no log)"
    return _ANSI.sub("", text)[-chars:]


@contextmanager
def langgraph_dev(config: Path, log_path: Path) -> Iterator[str]:
    """The URL of ``langgraph dev --config config``, run from the config's folder."""
    if not LANGGRAPH.exists():
        raise AssertionError(f"the langgraph CLI is not installed next to {sys.executable}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The in-memory runtime keeps its state in ./.langgraph_api; remove it afterwards
    # unless it was there already.
    state_dir = config.parent / ".langgraph_api"
    had_state_dir = state_dir.exists()
    command = [str(LANGGRAPH), "dev", "--no-browser", "--no-reload"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--config", str(config)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=config.parent,
            env=studio_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"langgraph dev exited {proc.returncode}:\n{_tail(log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ok", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"langgraph dev not up after {START_TIMEOUT}s:\n{_tail(log_path)}"
                )
            time.sleep(0.5)
        yield url
    finally:
        _stop(proc)
        if not had_state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
        print(f"langgraph dev log tail:\n{_tail(log_path, 3000)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    else:
        # The server may have left children behind in its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
