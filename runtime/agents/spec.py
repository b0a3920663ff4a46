"""Agent templates: their shape, and who may see them.

A template is stored as one ``agents`` row whose ``spec`` column holds the JSON of
:class:`TemplateSpec`; ``version`` bumps on every change. Templates owned by
:data:`SYSTEM_OWNER` (the default agent) are visible to every owner: :func:`visible_to`
in Python, :data:`runtime.agents.sql.VISIBLE` in SQL.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from runtime.errors import InvalidInput
from runtime.ids import ID_PATTERN

__all__ = [
    "BUILTIN_GRAPH",
    "CONFIGURABLE_FIELDS",
    "DEFAULT_AGENT_ID",
    "MAX_STEPS",
    "MAX_TOOLS",
    "MAX_TEMPLATE_METADATA_BYTES",
    "SYSTEM_OWNER",
    "AgentTemplate",
    "Budgets",
    "ModelSpec",
    "TemplateSpec",
    "default_template_spec",
    "is_reserved_key",
    "template_from_row",
    "visible_to",
]

DEFAULT_AGENT_ID = "default"
# Templates owned by SYSTEM_OWNER are visible to every owner (the default agent).
SYSTEM_OWNER = "system"

MAX_TEMPLATE_METADATA_BYTES = 16 * 1024


def visible_to(row_owner: str, owner: str | None) -> bool:
    """Whether ``owner`` sees a template owned by ``row_owner`` (None: sees every one).

    An owner sees its own templates and the system ones; the SQL twin is
    :data:`runtime.agents.sql.VISIBLE`.
    """
    return owner is None or row_owner in (owner, SYSTEM_OWNER)


class ModelSpec(BaseModel):
    """Which chat model a template uses: ``provider`` (``openai`` or ``offline``) and name."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["openai", "offline"] = "offline"
    name: str = "deterministic"
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Passed to the model class, e.g. temperature, base_url, delay_seconds.",
    )

    @staticmethod
    def split(value: str) -> dict[str, str]:
        """The fields ``provider:name`` stands for (``offline`` alone is the offline model).

        Unvalidated, so a caller validating a larger model reports errors in its own shape.
        """
        provider, _, name = value.partition(":")
        return {"provider": provider, "name": name or "deterministic"}

    @classmethod
    def parse(cls, value: str) -> ModelSpec:
        """Build from ``provider:name`` (see :meth:`split`)."""
        try:
            return cls.model_validate(cls.split(value))
        except ValidationError as exc:
            raise InvalidInput(f"invalid model {value!r}: {exc.errors()[0]['msg']}") from exc


# Template fields every graph finds in ``config["configurable"]`` (and the LangGraph API shows
# as an assistant's ``config.configurable``): how the built-in graph reads its configuration.
CONFIGURABLE_FIELDS = (
    "system_prompt",
    "model",
    "tools",
    "require_approval",
    "max_context_tokens",
    "budgets",
)
_CONFIGURABLE = set(CONFIGURABLE_FIELDS)

# The built-in ReAct graph, which an agent runs unless it names another.
BUILTIN_GRAPH = "react"
# ``configurable`` keys the runtime sets on every run: the thread, the caller's identity, its
# own objects (``sessiongraph_*``) and LangGraph's (``__*``, ``checkpoint_*``).
IDENTITY_KEYS = frozenset({"thread_id", "session_id", "owner", "session_metadata", "agent_id"})
_RESERVED_PREFIXES = ("__", "checkpoint_", "sessiongraph_")


def is_reserved_key(key: str) -> bool:
    """Whether a ``configurable`` key is the runtime's, never an agent's or a run's."""
    return key in IDENTITY_KEYS or key.startswith(_RESERVED_PREFIXES)


# The most tools one agent may name.
MAX_TOOLS = 64

# The most model calls any turn may make (templates and requests alike).
MAX_STEPS = 1000


class Budgets(BaseModel):
    """Per-turn limits, enforced by the turn's guard (:mod:`runtime.turns.guards`).

    ``max_steps`` counts model calls; ``None`` means no limit for the others.
    """

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(default=25, ge=1, le=MAX_STEPS)
    deadline_seconds: float | None = Field(default=None, gt=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_write_calls: int | None = Field(default=None, ge=0)
    max_repeated_calls: int | None = Field(default=None, ge=1)


class TemplateSpec(BaseModel):
    """The editable part of an agent template."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    system_prompt: str = Field(default="You are a helpful assistant.", max_length=100_000)
    model: ModelSpec = Field(default_factory=ModelSpec)
    tools: list[str] = Field(default_factory=list, max_length=MAX_TOOLS)
    require_approval: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Tools of this template that pause the turn for a human decision "
        "(besides those registered with requires_approval).",
    )
    graph: str = Field(
        default=BUILTIN_GRAPH,
        pattern=ID_PATTERN,
        validation_alias=AliasChoices("graph", "graph_kind"),
        description="The graph the agent runs: `react` (built in) or a name from langgraph.json.",
    )
    budgets: Budgets = Field(default_factory=Budgets)
    max_context_tokens: int | None = Field(default=None, ge=64)
    summary_model: ModelSpec | None = Field(
        default=None,
        description="With max_context_tokens: the model that summarises what is trimmed from "
        "the model's input; the summary is kept in the session's state.",
    )
    session_ttl_seconds: int | None = Field(default=None, gt=0)
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form labels (the LangGraph API shows them as assistant metadata).",
    )
    interrupt_before: Literal["*"] | list[str] = Field(
        default_factory=list,
        description="Static breakpoints: stop every turn before these nodes of the graph (`*`: "
        "every node), as a graph compiled with them does, unless a run names its own. The "
        "session is then `interrupted`; the next turn with no input continues it.",
    )
    interrupt_after: Literal["*"] | list[str] = Field(
        default_factory=list,
        description="Static breakpoints: stop every turn after these nodes (`*`: every node).",
    )
    configurable: dict[str, Any] = Field(
        default_factory=dict,
        description="Graph-specific settings, read by the graph from config['configurable'] "
        "beside the fields above (the LangGraph API's assistant config.configurable).",
    )
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="The graph's run-time context (the LangGraph API's assistant context), "
        "for graphs with a context_schema.",
    )

    def configurable_values(self) -> dict[str, Any]:
        """What every run of this agent finds in ``config["configurable"]``: the fields of
        :data:`CONFIGURABLE_FIELDS` (JSON-ready) and the graph-specific ``configurable``."""
        return {**self.configurable, **self.model_dump(mode="json", include=_CONFIGURABLE)}

    @model_validator(mode="after")
    def _approvals_name_tools(self) -> TemplateSpec:
        unknown = sorted(set(self.require_approval) - set(self.tools))
        if unknown:
            raise ValueError(f"require_approval names tools the agent does not have: {unknown}")
        return self

    @model_validator(mode="after")
    def _own_configurable(self) -> TemplateSpec:
        taken = sorted(k for k in self.configurable if is_reserved_key(k) or k in _CONFIGURABLE)
        if taken:
            raise ValueError(
                f"configurable may not set {taken}: the runtime's own keys, or template fields "
                "(set those as fields)"
            )
        return self

    @model_validator(mode="after")
    def _metadata_size(self) -> TemplateSpec:
        for name in ("metadata", "configurable", "context"):
            value = getattr(self, name)
            size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
            if size > MAX_TEMPLATE_METADATA_BYTES:
                raise ValueError(
                    f"{name} is {size} bytes; the limit is {MAX_TEMPLATE_METADATA_BYTES}"
                )
        return self


class AgentTemplate(BaseModel):
    """A stored template: its spec plus identity and version."""

    agent_id: str
    owner: str
    version: int
    spec: TemplateSpec
    created_at: datetime
    updated_at: datetime


def default_template_spec(model: str) -> TemplateSpec:
    """The agent that exists out of the box, so the first chat works with no setup."""
    return TemplateSpec(
        name="Default assistant",
        description="A general assistant with a calculator, a clock and a notepad.",
        system_prompt=(
            "You are a helpful assistant. Use the calculator for arithmetic, current_time "
            "for the date and time, and save_note / read_notes for the user's notes."
        ),
        model=ModelSpec.parse(model),
        tools=["calculator", "current_time", "save_note", "read_notes"],
    )


def template_from_row(row: dict[str, Any]) -> AgentTemplate:
    """The template an ``agents`` row holds."""
    return AgentTemplate(
        agent_id=row["agent_id"],
        owner=row["owner"],
        version=row["version"],
        spec=TemplateSpec.model_validate(row["spec"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
