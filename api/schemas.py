"""Request and response bodies, named by role (``SessionUpsert``, ``SessionPublic``, ...).

Every list answers ``{"items": [...], "next_cursor": ...}``; every error answers
``{"error", "message", "details"}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from runtime.agents import (
    DEFAULT_AGENT_ID,
    AgentStats,
    AgentTemplate,
    ModelSpec,
    TemplateSpec,
)
from runtime.ids import ID_PATTERN
from runtime.sessions import MAX_METADATA_BYTES, Session, SessionState
from runtime.tools import ToolSpec
from runtime.turns import (
    BLOCK_TYPES,
    MAX_CONTENT_BLOCKS,
    MAX_CONTENT_BYTES,
    MAX_MESSAGE_CHARS,
    BudgetLimits,
    Decision,
    split_pending,
)

T = TypeVar("T")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(description="A stable machine-readable code, e.g. `session_busy`.")
    message: str = Field(description="What went wrong, for people.")
    details: dict[str, Any] = Field(default_factory=dict)


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = None


# -- agents ------------------------------------------------------------------------------


def _model_spec(value: Any) -> Any:
    # "provider:name" is the short form of a model spec; its fields are then validated as
    # any other object's, so a bad one fails on the field that is wrong.
    return ModelSpec.split(value) if isinstance(value, str) else value


class AgentCreate(TemplateSpec):
    """A new agent template. ``model`` may be ``"provider:name"`` or an object."""

    id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="Chosen id; generated when omitted."
    )

    _model = field_validator("model", "summary_model", mode="before")(_model_spec)


def _optional(spec: type[BaseModel], names: tuple[str, ...]) -> dict[str, Any]:
    """``spec``'s fields ``names``, each optional (default None) with its own constraints."""
    fields: dict[str, Any] = {}
    for name in names:
        field = spec.model_fields[name]
        annotation: Any = field.annotation
        if field.metadata:  # max_length, ge, ...: the runtime's rule, not a copy of it
            annotation = Annotated[(annotation, *field.metadata)]
        fields[name] = (annotation | None, None)
    return fields


# What PATCH /v1/agents/{id} may change: every TemplateSpec field but metadata.
_EDITABLE = (
    "name",
    "description",
    "system_prompt",
    "model",
    "tools",
    "require_approval",
    "graph",
    "budgets",
    "max_context_tokens",
    "summary_model",
    "session_ttl_seconds",
    "interrupt_before",
    "interrupt_after",
    "configurable",
    "context",
)
_AgentChanges = create_model(
    "_AgentChanges", __config__=ConfigDict(extra="forbid"), **_optional(TemplateSpec, _EDITABLE)
)


class AgentUpdate(_AgentChanges):  # type: ignore[misc,valid-type]  # a model built above
    """A partial update; every change bumps the agent's version."""

    _model = field_validator("model", "summary_model", mode="before")(_model_spec)


class AgentPublic(TemplateSpec):
    """An agent template as stored."""

    model_config = ConfigDict(extra="ignore")

    id: str
    owner: str
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, template: AgentTemplate) -> AgentPublic:
        return cls(
            id=template.agent_id,
            owner=template.owner,
            version=template.version,
            created_at=template.created_at,
            updated_at=template.updated_at,
            **template.spec.model_dump(),
        )


class ToolPublic(BaseModel):
    """A registered tool: name it in an agent's ``tools``."""

    name: str
    description: str
    writes: bool = Field(description="Changes something; counts against max_write_calls.")
    idempotent: bool = Field(description="A write whose result is recorded per session.")
    requires_approval: bool = Field(description="Always pauses the turn for a human decision.")
    roles: list[str] = Field(description="Roles that may use it; empty: everyone.")
    source: str = Field(
        description='Where it comes from: "builtin", "python:<module>:<attr>", "mcp:<server>".'
    )
    args_schema: dict[str, Any] = Field(description="JSON schema of its arguments.")

    @classmethod
    def of(cls, spec: ToolSpec) -> ToolPublic:
        return cls(
            name=spec.name,
            description=spec.tool.description,
            writes=spec.writes,
            idempotent=spec.writes and spec.idempotent,
            requires_approval=spec.requires_approval,
            roles=sorted(spec.roles),
            source=spec.source,
            args_schema=spec.tool.tool_call_schema.model_json_schema()
            if hasattr(spec.tool.tool_call_schema, "model_json_schema")
            else {},
        )


# -- sessions ----------------------------------------------------------------------------


class PendingApproval(BaseModel):
    """A tool call waiting for a human decision."""

    tool_call_id: str
    name: str
    args: dict[str, Any]


class SessionUpsert(BaseModel):
    """Get-or-create a session. A different ``agent_id`` than the existing one is a 409."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(default=DEFAULT_AGENT_ID, pattern=ID_PATTERN)
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description=f"Free-form JSON, at most {MAX_METADATA_BYTES} bytes; filterable in lists.",
    )
    ttl_seconds: int | None = Field(
        default=None, gt=0, le=10 * 365 * 86400, description="Sliding expiry."
    )


class SessionUpdate(BaseModel):
    """A partial update of a session's descriptive fields (``metadata`` is replaced whole)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    metadata: dict[str, Any] | None = None
    ttl_seconds: int | None = Field(default=None, gt=0, le=10 * 365 * 86400)


class SessionPublic(BaseModel):
    """A session: its descriptive fields, lifecycle and counters."""

    id: str
    owner: str
    agent_id: str
    name: str | None
    description: str | None
    metadata: dict[str, Any]
    status: Literal["active", "inactive"]
    ttl_seconds: int
    created_at: datetime
    last_activity_at: datetime
    expires_at: datetime
    turns: int
    messages: int
    tokens_in: int
    tokens_out: int
    state: SessionState = Field(
        description="`running` while a turn runs; `awaiting_approval` while paused for a "
        "resume (see awaiting_approval); `interrupted` when its last turn stopped at a static "
        "breakpoint (the agent's or the run's interrupt_before / interrupt_after): resume it "
        "with an empty body to continue; else `idle`."
    )
    awaiting_approval: bool = Field(
        description="Paused: on tool calls that need a decision (pending_approvals), or on the "
        "graph's own interrupt (interrupts). Resume it before new messages."
    )
    pending_approvals: list[PendingApproval]
    interrupts: list[dict[str, Any]] = Field(
        description="The graph's own interrupts it is paused on ({id, value}): resume it with "
        "a value."
    )

    @classmethod
    def of(cls, session: Session) -> SessionPublic:
        approvals, interrupts = split_pending(session.pending_approvals)
        return cls(
            id=session.session_id,
            owner=session.owner,
            agent_id=session.agent_id,
            name=session.name,
            description=session.description,
            metadata=session.metadata,
            status=session.status,
            ttl_seconds=session.ttl_seconds,
            created_at=session.created_at,
            last_activity_at=session.last_activity_at,
            expires_at=session.expires_at,
            turns=session.turns,
            messages=session.messages,
            tokens_in=session.tokens_in,
            tokens_out=session.tokens_out,
            state=session.state,
            awaiting_approval=session.awaiting_approval,
            pending_approvals=[PendingApproval.model_validate(p) for p in approvals],
            interrupts=interrupts,
        )


# -- messages and turns ------------------------------------------------------------------


class TurnOptions(BaseModel):
    """What any turn request may add: tighter budgets, and the end user's roles."""

    model_config = ConfigDict(extra="forbid")

    budgets: BudgetLimits | None = Field(
        default=None, description="Tighter budgets for this turn (never looser than the agent's)."
    )
    roles: list[str] | None = Field(
        default=None,
        max_length=32,
        description="The end user's roles, for tool permissions; only `trusted` or `admin` keys "
        "may set them (default: the key's roles).",
    )


def _block_schema(title: str, example: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {
        "title": title,
        "type": "object",
        "required": ["type", *properties],
        "properties": {"type": {"const": example["type"]}, **properties},
        "additionalProperties": True,
        "examples": [example],
    }


_URL = {"type": "string", "description": "https://... or data:<mime>;base64,..."}
_STR = {"type": "string"}
_B64 = "iVBORw0KGgo="
# Documentation only: the runtime's check_content is the one rule that accepts or refuses a
# block (unknown types and malformed blocks: 422; limits: 422/413), for every entry point.
_BLOCK_SCHEMA: dict[str, Any] = {
    "title": "ContentBlock",
    "description": (
        f"A content block: one of {', '.join(BLOCK_TYPES)}, in OpenAI's shapes or LangChain's "
        "standard ones (`image`/`file` with `url`, `base64` + `mime_type` or `file_id`, or the "
        "older `source_type` form). Extra keys are kept and passed to the model."
    ),
    "anyOf": [
        _block_schema("TextBlock", {"type": "text", "text": "What is this?"}, text=_STR),
        _block_schema(
            "ImageUrlBlock",
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{_B64}"}},
            image_url={"type": "object", "properties": {"url": _URL}, "required": ["url"]},
        ),
        _block_schema(
            "OpenAIFileBlock",
            {
                "type": "file",
                "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
            },
            file={"type": "object", "properties": {"file_data": _URL, "filename": _STR}},
        ),
        {
            "title": "StandardBlock",
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"enum": ["image", "file"]},
                "url": _URL,
                "base64": {"type": "string"},
                "mime_type": {"type": "string"},
                "file_id": {"type": "string"},
            },
            "additionalProperties": True,
            "examples": [
                {"type": "image", "url": "https://example.com/cat.png"},
                {"type": "image", "base64": _B64, "mime_type": "image/png"},
            ],
        },
    ],
}
ContentBlock = Annotated[dict[str, Any], WithJsonSchema(_BLOCK_SCHEMA)]
MessageContent = Annotated[str, Field(min_length=1)] | list[ContentBlock]
_CONTENT_DOC = (
    f"Text (at most {MAX_MESSAGE_CHARS} characters), or a list of at most "
    f"{MAX_CONTENT_BLOCKS} content blocks (text, images, files) of at most "
    f"{MAX_CONTENT_BYTES} bytes together, as JSON."
)


class _ContentOrInput(TurnOptions):
    """A turn's input: a user message (``content``), or the graph's ``input``."""

    content: MessageContent | None = Field(
        default=None,
        description=_CONTENT_DOC + " For graphs with a `messages` channel.",
    )
    input: dict[str, Any] | None = Field(
        default=None,
        description="Instead of `content`: the graph's input as its input schema takes it, e.g. "
        '`{"messages": [{"role": "system", ...}, {"role": "user", ...}], "topic": "refunds"}`.',
    )

    @model_validator(mode="after")
    def _one_of(self) -> _ContentOrInput:
        if (self.content is None) == (self.input is None):
            raise ValueError("give either content or input")
        return self


class MessageCreate(_ContentOrInput):
    """A user message. ``agent_id`` creates the session first if it does not exist."""

    agent_id: str | None = Field(default=None, pattern=ID_PATTERN)


class AgentChat(_ContentOrInput):
    """A user message to an agent; without ``session_id`` a new session is started."""

    session_id: str | None = Field(default=None, pattern=ID_PATTERN)


class ResumeRequest(TurnOptions):
    """What a paused turn waits for: decisions on its pending tool calls (one per call), or
    the ``value`` for a graph's own ``interrupt()``; neither continues a session stopped at a
    static breakpoint (state ``interrupted``)."""

    decisions: list[Decision] | None = Field(default=None, min_length=1, max_length=64)
    value: Any = Field(
        default=None, description="For a graph's own interrupt(): the value it returns."
    )

    @model_validator(mode="after")
    def _one_of(self) -> ResumeRequest:
        if self.decisions is not None and self.value is not None:
            raise ValueError("give decisions or value, not both")
        return self

    def turn_fields(self) -> dict[str, Any]:
        """The resume as the runtime's TurnRequest fields: decisions, a value, or (neither)
        continue from a static breakpoint."""
        if self.decisions is not None:
            return {"decisions": [d.model_dump(exclude_none=True) for d in self.decisions]}
        if self.value is not None:
            return {"resume_value": self.value}
        return {"proceed": True}


class ToolCall(BaseModel):
    id: str | None
    name: str
    args: dict[str, Any]


class MessagePublic(BaseModel):
    """One message of a conversation."""

    id: str | None
    role: Literal["user", "assistant", "system", "tool"] | str
    content: str | list[ContentBlock] = Field(
        description="The text; or, for a message with images or files, its content blocks."
    )
    created_at: str | None = Field(description="When the message was stored (ISO 8601, UTC).")
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    status: str | None = None
    metadata: dict[str, Any] | None = Field(default=None, description="The message's own metadata.")
    edited_at: str | None = Field(default=None, description="When it was last edited, if ever.")
    revisions: list[dict[str, Any]] | None = Field(
        default=None, description="Earlier contents, oldest first: `{content, until}`."
    )


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class TurnPublic(BaseModel):
    """A completed turn: the reply and every message the turn added."""

    session_id: str
    reply: str = Field(description="The assistant's final text.")
    messages: list[MessagePublic] = Field(
        description="What the turn added: the user message, tool calls, tool results, replies."
    )
    usage: Usage
    latency_ms: float
    model_latency_ms: float
    warnings: list[str] = Field(description="Budgets that stopped the turn, by name.")
    status: Literal["completed", "awaiting_approval", "interrupted"]
    interrupts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="With status interrupted: the graph's interrupts ({id, value}) to resume "
        "with a value.",
    )
    pending_approvals: list[PendingApproval] = Field(
        description="With status awaiting_approval: the calls to approve, reject or edit."
    )


# -- admin -------------------------------------------------------------------------------


class StatsPublic(BaseModel):
    items: list[AgentStats]


class SweepRequest(BaseModel):
    """Without ``max_idle_hours``: remove expired sessions. With it: those idle that long."""

    model_config = ConfigDict(extra="forbid")

    max_idle_hours: float | None = Field(default=None, gt=0, le=100 * 365 * 24)


class SweptSession(BaseModel):
    owner: str
    session_id: str


class SweepPublic(BaseModel):
    removed: int
    sessions: list[SweptSession]
