"""Property-based fuzzing of every HTTP operation in the app's OpenAPI schema.

Schemathesis generates requests from ``/openapi.json`` (valid ones, then invalid ones) and
sends them to a real uvicorn serving the app through its real lifespan on this module's
own database. Every response must be a non-5xx, and every 4xx JSON response must have the
shared error body ``{"error", "message", "details"}``.

Every operation gets a positive run with generated ids, a positive run with its path ids
pinned to an agent and a session that exist (so generated bodies reach the database, not
just "not found"), and a negative run when some input can be made invalid. All failures
of all runs are collected and reported together, each with a curl command to reproduce it.

The server runs on a background thread with its own event loop, so the test itself is a
plain synchronous function driving Hypothesis (no async fixture in the way). Generation is
derandomized, so a CI run sees the same requests every time. WebSocket routes are not in
the OpenAPI schema and are not fuzzed.
"""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, CheckContext, GenerationMode
from schemathesis import Response as StResponse
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok

from runtime import Settings

# Per run (an operation in one mode): about 53 runs x 25 examples, ~1300 requests in all.
MAX_EXAMPLES = 25
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 30.0


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


OPENAI_PATHS = {"/v1/chat/completions", "/v1/models"}


def error_body_shape(ctx: CheckContext, response: StResponse, case: Case) -> bool | None:
    """Every 4xx JSON answer is ``{"error": str, "message": str, "details": {...}}``."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = ", ".join(response.headers.get("content-type", []))
    if "json" not in content_type:
        raise AssertionError(f"{response.status_code} answered {content_type!r}, not JSON")
    body: Any = response.json()
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    if case.path in OPENAI_PATHS:
        # OpenAI's own error shape, which its clients parse.
        error = body.get("error")
        assert isinstance(error, dict), f"not OpenAI's error shape: {body!r}"
        assert {"message", "type", "param", "code"} <= set(error), body
        return None
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


# Two targets that exist while the fuzzer runs, so that generated requests also reach the
# handlers' database writes instead of stopping at "not found": some runs pin the path's
# agent_id / session_id to them, and each of their examples first recreates them (an
# earlier example may have deleted the agent, the session, or deactivated it).
FUZZ_AGENT_ID = "fuzz-agent"
FUZZ_SESSION_ID = "fuzz-session"
_CONSTRAINTS = {"pattern", "minLength", "maxLength", "enum", "const", "format"}


@dataclass(frozen=True)
class Plan:
    """One Hypothesis run: an operation, a generation mode and any pinned path values."""

    operation: schemathesis.APIOperation
    mode: GenerationMode
    path_parameters: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        pinned = ", ".join(f"{k}={v}" for k, v in self.path_parameters.items())
        return f"{self.operation.label} [{self.mode.value}{'; ' + pinned if pinned else ''}]"


def plans_for(operation: schemathesis.APIOperation) -> list[Plan]:
    """Positive runs (free ids, then pinned to the fuzz targets) and a negative run."""
    plans = [Plan(operation, GenerationMode.POSITIVE)]
    path_names = [p.name for p in operation.iter_parameters() if p.location == "path"]
    targets = {"agent_id": FUZZ_AGENT_ID, "session_id": FUZZ_SESSION_ID}
    if path_names and all(name in targets for name in path_names):
        pinned = {name: targets[name] for name in path_names}
        plans.append(Plan(operation, GenerationMode.POSITIVE, pinned))

    # Negative: something must be possible to make invalid. A path parameter without any
    # constraint (agent_id) cannot be, yet schemathesis 4 still tries and then rejects
    # every case; pin such parameters to the fuzz agent.
    unconstrained: dict[str, str] = {}
    negatable = len(operation.body) > 0
    for parameter in operation.iter_parameters():
        schema = parameter.definition.get("schema", {})
        if parameter.location == "path" and not _CONSTRAINTS & set(schema):
            unconstrained[parameter.name] = FUZZ_AGENT_ID
        else:
            negatable = True
    if negatable:
        plans.append(Plan(operation, GenerationMode.NEGATIVE, unconstrained))
    return plans


def ensure_targets(base_url: str, session: requests.Session) -> None:
    """(Re)create the fuzz agent and an active fuzz session on it."""
    agent = session.post(
        f"{base_url}/v1/agents",
        json={"id": FUZZ_AGENT_ID, "name": "fuzz target", "tools": ["calculator"]},
        timeout=REQUEST_TIMEOUT,
    )
    assert agent.status_code in (201, 409), agent.text
    created = session.put(
        f"{base_url}/v1/sessions/{FUZZ_SESSION_ID}",
        json={"agent_id": FUZZ_AGENT_ID},
        timeout=REQUEST_TIMEOUT,
    )
    assert created.status_code in (200, 201), created.text
    active = session.post(
        f"{base_url}/v1/sessions/{FUZZ_SESSION_ID}/activate", timeout=REQUEST_TIMEOUT
    )
    assert active.status_code == 200, active.text


def fuzz(
    plan: Plan, base_url: str, session: requests.Session, max_examples: int = MAX_EXAMPLES
) -> None:
    """Run one plan; raises what Hypothesis found (after shrinking)."""
    kwargs: dict[str, Any] = {"generation_mode": plan.mode}
    if plan.path_parameters:
        kwargs["path_parameters"] = plan.path_parameters
    uses_targets = bool(plan.path_parameters)

    @hsettings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
        print_blob=False,
    )
    @given(case=plan.operation.as_strategy(**kwargs))
    def run(case: Case) -> None:
        if uses_targets:
            ensure_targets(base_url, session)
        response = case.call(base_url=base_url, session=session, timeout=REQUEST_TIMEOUT)
        case.validate_response(response, checks=CHECKS)

    run()


def is_langgraph(operation: schemathesis.APIOperation) -> bool:
    """Whether the operation is one of the LangGraph Server API's (tagged "langgraph: ...")."""
    return any(t.startswith("langgraph") for t in operation.definition.raw.get("tags", []))


def _describe(exc: BaseException, depth: int = 0) -> str:
    """An exception with its notes and, for groups, every sub-exception, indented."""
    lines = [f"{type(exc).__name__}: {exc}", *getattr(exc, "__notes__", [])]
    if isinstance(exc, BaseExceptionGroup):
        lines += [_describe(sub, depth + 1) for sub in exc.exceptions]
    return textwrap.indent("\n".join(lines), "    " * depth)


@pytest.mark.timeout(240)
def test_no_server_errors_on_any_operation(base_url: str) -> None:
    """Valid and invalid requests to every operation: no 5xx, 4xx bodies well-formed."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the app's schema has an invalid operation: {result}"
        operation = result.ok()
        # The LangGraph routes have a test of their own (below).
        if not is_langgraph(operation):
            operations.append(operation)
    labels = {op.label for op in operations}
    # Sanity: the fuzz really covers the API, not an empty or partial schema.
    assert len(operations) >= 20, sorted(labels)
    assert "POST /v1/sessions/{session_id}/messages" in labels
    assert "DELETE /v1/agents/{agent_id}" in labels

    failures: list[str] = []
    plans = [plan for operation in operations for plan in plans_for(operation)]
    assert len(plans) >= 45, [plan.label for plan in plans]
    with requests.Session() as session:
        ensure_targets(base_url, session)
        for plan in plans:
            try:
                fuzz(plan, base_url, session)
            # Collect every run's failures (schemathesis raises a FailureGroup, which is a
            # BaseExceptionGroup), then report them all at once.
            except (Exception, FailureGroup) as exc:
                failures.append(f"--- {plan.label}\n{_describe(exc)}")
    assert not failures, f"{len(failures)} of {len(plans)} runs failed:\n\n" + "\n\n".join(failures)


# Per run of a LangGraph operation: about 43 operations x 2 runs x 10 examples.
LANGGRAPH_EXAMPLES = 10


@pytest.mark.timeout(240)
def test_no_server_errors_on_langgraph_operations(base_url: str) -> None:
    """Valid requests, and requests with an invalid body, to every LangGraph operation: no
    5xx, 4xx bodies well-formed. (Path ids are free strings: a generated one is "not
    found", which the positive runs already reach.)"""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT)
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    operations = [op for op in operations if is_langgraph(op)]
    labels = {op.label for op in operations}
    assert len(operations) >= 40, sorted(labels)
    assert "POST /threads/{thread_id}/runs/stream" in labels

    failures: list[str] = []
    with requests.Session() as session:
        ensure_targets(base_url, session)
        for operation in operations:
            modes = [GenerationMode.POSITIVE]
            if len(operation.body) > 0:
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                plan = Plan(operation, mode)
                try:
                    fuzz(plan, base_url, session, LANGGRAPH_EXAMPLES)
                except Unsatisfiable:
                    continue  # an optional body: nothing invalid to send
                except (AssertionError, FailureGroup, Exception) as exc:
                    failures.append(f"--- {plan.label}\n{_describe(exc)}")
    assert not failures, "\n\n".join(failures)
