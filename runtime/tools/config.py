"""The schema of the tools a project declares in ``langgraph.json``: the ``sessiongraph``
section's ``tools`` (Python tools) and ``mcp_servers`` (MCP servers).

::

    "sessiongraph": {
      "tools": {"refund": {"import": "my_tools:refund", "writes": true, "roles": ["ops"]}},
      "mcp_servers": {
        "files": {"transport": "stdio", "command": "python", "args": ["./files_server.py"],
                  "tools": {"delete_file": {"writes": true, "requires_approval": true}}},
        "search": {"transport": "streamable_http", "url": "http://127.0.0.1:9000/mcp",
                   "headers": {"authorization": "Bearer ${SEARCH_TOKEN}"}}}}

Every entry forbids unknown keys, so a typo fails start-up instead of being ignored. Each
problem is a :class:`~runtime.errors.ConfigError` naming the entry
(``sessiongraph.tools.refund``, ``sessiongraph.mcp_servers.files``);
:func:`runtime.tools.loader.load_config_tools` loads them. The reference for users is the
README's "Tools and MCP servers declared in langgraph.json".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from runtime.errors import ConfigError

__all__ = [
    "SECTION_KEYS",
    "McpServerConfig",
    "PythonToolConfig",
    "StdioServerConfig",
    "StreamableHttpServerConfig",
    "ToolOverride",
    "validate_entry",
]

# The keys of the ``sessiongraph`` section these tools come from; the project loader owns the rest.
SECTION_KEYS = ("tools", "mcp_servers")

# What chat-model APIs accept as a tool name (OpenAI: ^[a-zA-Z0-9_-]{1,64}$).
TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"
MAX_TOOL_NAME = 64
Role = Annotated[str, Field(min_length=1, max_length=200)]


class ToolPolicy(BaseModel):
    """The guard-relevant facts of a tool (the fields of :class:`ToolSpec`)."""

    model_config = ConfigDict(extra="forbid")

    writes: bool = Field(default=False, description="Changes something.")
    requires_approval: bool = Field(default=False, description="Pause for a human first.")
    roles: list[Role] = Field(default_factory=list, description="Who may use it; empty: all.")
    idempotent: bool = Field(default=True, description="Record a write's result per session.")


class ToolOverride(BaseModel):
    """Policy for one tool of an MCP server; an unset field keeps the server's value."""

    model_config = ConfigDict(extra="forbid")

    writes: bool | None = None
    requires_approval: bool | None = None
    roles: list[Role] | None = None
    idempotent: bool | None = None


class PythonToolConfig(ToolPolicy):
    """``sessiongraph.tools.<name>``: a LangChain tool or a plain function, by import path."""

    import_: str = Field(
        alias="import",
        pattern=r"^[^:]+:[A-Za-z_][\w.]*$",
        description='"package.module:attr" or "./file.py:attr" (relative to langgraph.json).',
    )
    description: str | None = Field(
        default=None, min_length=1, description="For a plain function: instead of its docstring."
    )


class _ServerConfig(ToolPolicy):
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="Bound on start-up (listing tools) and on each call."
    )
    tools: dict[str, ToolOverride] = Field(
        default_factory=dict, description="Per-tool policy, by the server's own tool name."
    )


class StdioServerConfig(_ServerConfig):
    """An MCP server started as a child process, speaking MCP on its stdin/stdout."""

    transport: Literal["stdio"]
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = Field(
        default=None, description="Added to a minimal environment (PATH, HOME …)."
    )
    cwd: str | None = Field(default=None, description="Default: the langgraph.json folder.")


class StreamableHttpServerConfig(_ServerConfig):
    """An MCP server reached over streamable HTTP."""

    transport: Literal["streamable_http"]
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)


McpServerConfig = Annotated[
    StdioServerConfig | StreamableHttpServerConfig, Field(discriminator="transport")
]
SERVER_ADAPTER: TypeAdapter[StdioServerConfig | StreamableHttpServerConfig] = TypeAdapter(
    McpServerConfig
)


def validate_entry(entry: str, adapter: TypeAdapter[Any], raw: Any) -> Any:
    """Validate one entry; a failure is a ``ConfigError`` naming the entry and the field.

    Only pydantic's message is quoted, never the input value (it may be a secret).
    """
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p not in ("stdio", "streamable_http"))
        raise ConfigError(entry, f"{where}: {first['msg']}" if where else first["msg"]) from None
