"""MCP servers named in ``langgraph.json``, as tools, through ``langchain-mcp-adapters``.

At start-up each server is connected once to list its tools (a failure is a
:class:`~runtime.errors.ConfigError` naming the server and the cause); each becomes
``<server>_<tool>`` (the adapters' ``tool_name_prefix``) with the server's policy and the
tool's own overrides. A call opens its own MCP session (the adapters do so when given a
connection rather than a session): a stdio server is started for the call, an HTTP server
is connected for it. A server that died is therefore reconnected on the next call, and
nothing long-lived needs closing.

During a turn a failing server (killed, unreachable, too slow) never raises out of the
tool: :class:`ServerFailures` turns the failure into an MCP error result, which the
adapters give the model as a ``ToolMessage`` with ``status="error"``.

``${VAR}`` in ``url``, ``headers``, ``args`` and ``env`` is read from the environment at
start-up. The values never reach a log line or an error message: any text quoted from an
exception is redacted, and an unset variable is reported by name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool
from langchain_mcp_adapters.interceptors import MCPToolCallRequest, MCPToolCallResult
from langchain_mcp_adapters.tools import load_mcp_tools
from mcp.types import CallToolResult, TextContent

from runtime.errors import ConfigError
from runtime.tools.config import StdioServerConfig, StreamableHttpServerConfig, ToolOverride
from runtime.tools.registry import ToolSpec

__all__ = ["ServerFailures", "describe_failure", "expand_env", "server_tools"]

log = logging.getLogger(__name__)

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
REDACTED = "***"
MAX_CAUSE = 300

ServerConfig = StdioServerConfig | StreamableHttpServerConfig


def expand_env(entry: str, where: str, value: str, secrets: set[str]) -> str:
    """``value`` with each ``${VAR}`` replaced from the environment; the values join ``secrets``.

    Raises:
        ConfigError: a variable is not set (named; ``where`` says which field).
    """

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None:
            raise ConfigError(entry, f"environment variable {name} is not set (in {where})")
        if found:
            secrets.add(found)
        return found

    return ENV_REFERENCE.sub(lookup, value)


def describe_failure(exc: BaseException, secrets: set[str]) -> str:
    """One line naming what went wrong, with every secret value redacted.

    An exception group (anyio task groups wrap transport errors) is described by its leaves.
    """
    leaves: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        else:
            leaves.append(current)
    text = "; ".join(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__ for e in leaves)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return " ".join(text.split())[:MAX_CAUSE]  # one line (httpx's messages span several)


def _connection(
    entry: str, config: ServerConfig, base_dir: Path, secrets: set[str]
) -> dict[str, Any]:
    """The adapters' connection dict, with ``${VAR}`` expanded."""
    if isinstance(config, StreamableHttpServerConfig):
        return {
            "transport": "streamable_http",
            "url": expand_env(entry, "url", config.url, secrets),
            "headers": {
                k: expand_env(entry, f"headers.{k}", v, secrets) for k, v in config.headers.items()
            },
            "timeout": config.timeout_seconds,
        }
    command = config.command
    if "/" in command and not Path(command).is_absolute():
        command = str((base_dir / command).resolve())  # relative to langgraph.json
    env = None
    if config.env is not None:
        env = {k: expand_env(entry, f"env.{k}", v, secrets) for k, v in config.env.items()}
    return {
        "transport": "stdio",
        "command": command,
        "args": [expand_env(entry, f"args[{i}]", a, secrets) for i, a in enumerate(config.args)],
        "env": env,
        "cwd": str(base_dir / config.cwd) if config.cwd else str(base_dir),
    }


class ServerFailures:
    """A tool-call interceptor: a failing server becomes an error result, never an exception.

    It also bounds each call by the server's ``timeout_seconds``.
    """

    def __init__(self, server: str, timeout_seconds: float, secrets: set[str]) -> None:
        self.server = server
        self.timeout_seconds = timeout_seconds
        self._secrets = secrets

    async def __call__(
        self,
        request: MCPToolCallRequest,
        handler: Callable[[MCPToolCallRequest], Awaitable[MCPToolCallResult]],
    ) -> MCPToolCallResult:
        try:
            return await asyncio.wait_for(handler(request), timeout=self.timeout_seconds)
        except TimeoutError:
            cause = f"no answer within {self.timeout_seconds:g} s"
        except Exception as exc:
            cause = describe_failure(exc, self._secrets)
        log.warning("MCP server %r failed on %r: %s", self.server, request.name, cause)
        text = (
            f"error: the MCP server {self.server!r} could not run {request.name!r} ({cause}); "
            "it may work if tried again later"
        )
        return CallToolResult(content=[TextContent(type="text", text=text)], isError=True)


async def server_tools(
    entry: str, server: str, config: ServerConfig, base_dir: Path
) -> list[ToolSpec]:
    """List a server's tools (one connection, bounded by ``timeout_seconds``) as specs.

    Raises:
        ConfigError: an unset ``${VAR}``; the server cannot be started or reached, or does
            not answer in time; a per-tool override names a tool the server lacks.
    """
    secrets: set[str] = set()
    connection = _connection(entry, config, base_dir, secrets)
    try:
        tools = await asyncio.wait_for(
            load_mcp_tools(
                None,
                connection=connection,  # type: ignore[arg-type]
                server_name=server,
                tool_name_prefix=True,
                tool_interceptors=[ServerFailures(server, config.timeout_seconds, secrets)],
            ),
            timeout=config.timeout_seconds,
        )
    except TimeoutError:
        raise ConfigError(
            entry,
            f"MCP server {server!r} did not list its tools within {config.timeout_seconds:g} s",
        ) from None
    except Exception as exc:
        raise ConfigError(
            entry,
            f"MCP server {server!r} cannot be started or reached: {describe_failure(exc, secrets)}",
        ) from None
    by_name = {_unprefixed(server, tool): tool for tool in tools}
    unknown = sorted(set(config.tools) - set(by_name))
    if unknown:
        raise ConfigError(
            entry, f"tools {unknown} are not tools of the server (it has {sorted(by_name)})"
        )
    return [_spec(tool, config, config.tools.get(name), server) for name, tool in by_name.items()]


def _unprefixed(server: str, tool: BaseTool) -> str:
    return tool.name.removeprefix(f"{server}_")


def _spec(
    tool: BaseTool, server: ServerConfig, override: ToolOverride | None, name: str
) -> ToolSpec:
    """The server's policy, with the tool's own overrides on top."""
    own = override or ToolOverride()
    return ToolSpec(
        tool,
        writes=server.writes if own.writes is None else own.writes,
        requires_approval=server.requires_approval
        if own.requires_approval is None
        else own.requires_approval,
        roles=frozenset(server.roles if own.roles is None else own.roles),
        idempotent=server.idempotent if own.idempotent is None else own.idempotent,
        source=f"mcp:{name}",
    )
