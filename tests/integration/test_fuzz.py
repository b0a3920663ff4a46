"""Property-based fuzzing of every HTTP operation in the app's OpenAPI schema.

Schemathesis generates requests from ``/openapi.json`` (valid ones, then invalid ones) and
sends them to a real uvicorn serving the app through its real lifespan on this module's
own database. Every response must be a non-5xx, and every 4xx JSON response must have the
shared error body ``{"error", "message", "details"}``.

The server runs on a background thread with its own event loop, so the test itself is a
plain synchronous function driving Hypothesis (no async fixture in the way). Generation is
derandomized, so a CI run sees the same requests every time. WebSocket routes are not in
the OpenAPI schema and are not fuzzed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis.internal.conjecture import utils as conjecture_utils
from schemathesis import Case, CheckContext, GenerationMode
from schemathesis import Response as StResponse
from schemathesis.checks import not_a_server_error

from runtime import Settings

# Per operation and generation mode. 22 operations x 2 modes x 25 examples ~ 1100 requests.
MAX_EXAMPLES = 25
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 30.0


def _install_many_more_shim() -> None:
    """Let hypothesis-jsonschema run on this Hypothesis.

    hypothesis-jsonschema 0.23.1 (the newest schemathesis 4.x allows) still drives
    Hypothesis' internal ``many`` collection helper through ``many.more()``, which newer
    Hypothesis releases (6.170 is locked here) replaced by ``with many(...) as e: for _ in
    e``. Without ``more()`` every object schema fails to generate with ``AttributeError:
    'many' object has no attribute 'more'``. This adapter maps the old calling convention
    onto the new one; it does nothing once Hypothesis has ``more()`` again.
    """
    many = conjecture_utils.many
    if hasattr(many, "more"):
        return

    def more(self: Any) -> bool:
        if getattr(self, "_legacy_iterator", None) is None:
            self.__enter__()
            self._legacy_iterator = iter(self)
        try:
            next(self._legacy_iterator)
        except StopIteration:
            self.__exit__(None)
            return False
        return True

    many.more = more  # type: ignore[attr-defined]


_install_many_more_shim()


@contextmanager
def server_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 from a background thread; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", log_level="warning", ws="none"
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # reported to the test thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="fuzz-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if failure:
                raise RuntimeError("the server failed to start") from failure[0]
            if not thread.is_alive():
                raise RuntimeError("the server exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the server thread did not stop"


def error_body_shape(ctx: CheckContext, response: StResponse, case: Case) -> bool | None:
    """Every 4xx JSON answer is ``{"error": str, "message": str, "details": {...}}``."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    if "json" not in content_type:
        raise AssertionError(f"{response.status_code} answered {content_type!r}, not JSON")
    body: Any = response.json()
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    missing = {"error", "message", "details"} - set(body)
    assert not missing, f"error body lacks {sorted(missing)}: {body!r}"
    assert isinstance(body["error"], str), f"error is not a string: {body!r}"
    assert isinstance(body["message"], str), f"message is not a string: {body!r}"
    assert isinstance(body["details"], dict), f"details is not an object: {body!r}"
    return None


CHECKS = [not_a_server_error, error_body_shape]


@pytest.fixture(scope="module")
def base_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on this module's database, served by uvicorn on a background thread."""
    from api.app import create_app

    settings = Settings(
        database_url=database_url,
        data_dir=Path(tmp_path_factory.mktemp("fuzz-data")),
        sweep_interval_seconds=0,
        lease_timeout_seconds=5,
        pool_min_size=1,
        pool_max_size=8,
    )
    with server_in_thread(create_app(settings)) as url:
        yield url


def _fuzz_operation(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
) -> None:
    @hsettings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
        print_blob=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        response = case.call(base_url=base_url, session=session, timeout=REQUEST_TIMEOUT)
        case.validate_response(response, checks=CHECKS)

    run()


@pytest.mark.timeout(240)
def test_no_server_errors_on_any_operation(base_url: str) -> None:
    """Valid and invalid requests to every operation: no 5xx, 4xx bodies well-formed."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    # Sanity: the fuzz really covers the API, not an empty or partial schema.
    assert len(operations) >= 20, sorted(labels)
    assert "POST /v1/sessions/{session_id}/messages" in labels
    assert "DELETE /v1/agents/{agent_id}" in labels

    failures: list[str] = []
    with requests.Session() as session:
        for operation in operations:
            modes = [GenerationMode.POSITIVE]
            if len(operation.body) or any(True for _ in operation.iter_parameters()):
                # An operation without inputs has no invalid request to generate.
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                try:
                    _fuzz_operation(operation, mode, base_url, session)
                except Exception as exc:  # collect every operation's failure, then report
                    failures.append(f"--- {operation.label} [{mode.value}]\n{exc}")
    assert not failures, "\n\n".join(failures)
