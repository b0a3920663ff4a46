"""Settings, read from the environment (prefix ``SESSIONGRAPH_``) and ``.env``.

Every field here is listed in the README's configuration table; a unit test keeps the two
(and ``docker-compose.yml``) in agreement.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "env_names", "get_settings"]


class Settings(BaseSettings):
    """Runtime and server configuration.

    ``DATABASE_URL`` (the standard name) and ``SESSIONGRAPH_DATABASE_URL`` are both read;
    every other field is ``SESSIONGRAPH_<FIELD>``.
    """

    model_config = SettingsConfigDict(
        env_prefix="SESSIONGRAPH_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        # `FOO=` in a compose file or a shell means "not set", not "the empty string".
        env_ignore_empty=True,
        # A validation error must not echo DATABASE_URL (it may carry a password) into logs.
        hide_input_in_errors=True,
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "SESSIONGRAPH_DATABASE_URL", "database_url"),
        description="Postgres URL. Unset: start the embedded Postgres in `data_dir`.",
        # It may carry a password: never in a repr, hence never in a log line or traceback.
        repr=False,
    )
    config: Path | None = Field(
        default=None,
        description="The project file (`langgraph.json`) whose graphs and tools are served. "
        "Unset: `./langgraph.json` when it exists (`serve --config PATH` sets it).",
    )
    database_pooler: Literal["none", "session", "transaction"] = Field(
        default="none",
        description=(
            "What `DATABASE_URL` points at: `none` (Postgres itself), `session` or "
            "`transaction` (a pooler such as pgbouncer in that mode; `transaction` turns off "
            "server-side prepared statements and every other use of session state)."
        ),
    )
    database_schema: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description=(
            "Schema that holds every table (ours, LangGraph's checkpoints and store); "
            "migrations create it. Unset: the role's default `search_path` (`public`)."
        ),
    )
    pool_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a request waits for a database connection before a 503.",
    )
    database_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Longest a database connection may be held by one use (a statement, a "
            "transaction) or take to open; past it the connection is cut and the request "
            "answers 503 (a stalled network or server)."
        ),
    )
    data_dir: Path = Field(
        default=Path(".sessiongraph"),
        description="Folder for the embedded Postgres (used only without DATABASE_URL).",
    )
    pool_min_size: int = Field(default=2, ge=0, description="Connections kept open per process.")
    pool_max_size: int = Field(default=10, ge=1, description="Most connections per process.")
    pool_max_idle_seconds: float = Field(
        default=300.0, gt=0, description="Close pooled connections idle longer than this."
    )
    pool_max_lifetime_seconds: float = Field(
        default=1800.0, gt=0, description="Recycle pooled connections older than this."
    )
    default_model: str | None = Field(
        default=None,
        description=(
            "`provider:name` for the default agent, e.g. `openai:gpt-4o-mini`. Unset: "
            "`openai:gpt-4o-mini` when an OpenAI key is set, else `offline:deterministic`."
        ),
    )
    openai_base_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible server."
    )
    openai_api_key: SecretStr | None = Field(default=None, description="Key for the OpenAI API.")
    session_ttl_seconds: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="Default sliding session TTL when the agent template sets none.",
    )
    sweep_interval_seconds: float = Field(
        default=60.0, ge=0, description="Seconds between expiry sweeps; 0 turns the sweeper off."
    )
    sweep_batch_size: int = Field(
        default=1000, ge=1, description="Sessions deleted per sweep transaction."
    )
    lease_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A turn's lease on its session lapses after this unless renewed.",
    )
    heartbeat_timeout_seconds: float = Field(
        default=1.5,
        gt=0,
        description=(
            "A server process beats a row in Postgres every third of this; one silent longer "
            "(killed, or paused) is dead, and its sessions' leases are free at once instead "
            "of after the lease timeout (its writes are refused if it comes back; a "
            "checkpoint write it was paused inside is ended by Postgres after this long)."
        ),
    )
    shutdown_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        description="On SIGTERM or SIGINT, how long turns in flight may take to finish before "
        "they are cancelled (and rolled back).",
    )
    lease_wait_seconds: float = Field(
        default=0.0,
        ge=0,
        description="How long a turn waits for a busy session before `SessionBusy` (0: refuse).",
    )
    model_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description=(
            "Retries of a failed model call (timeouts, 429 honouring Retry-After, 5xx, "
            "malformed responses), with exponential backoff."
        ),
    )
    model_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Timeout of one model request."
    )
    tool_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A tool call running longer becomes an error result."
    )
    checkpoint_durability: Literal["exit", "async", "sync"] = Field(
        default="exit",
        description=(
            "When a turn's checkpoints are written: `exit`, one per turn when it ends or pauses "
            "(a turn that dies half-way is rolled back anyway); `async` or `sync`, one per "
            "graph step, for step-by-step time travel in Studio."
        ),
    )
    checkpoints_kept: int = Field(
        default=5,
        ge=0,
        description=(
            "Checkpoints kept per session for time travel (the newest ones; 0 keeps all). "
            "Each holds a full copy of the messages, so this bounds a session's storage."
        ),
    )
    run_events_retention_seconds: float = Field(
        default=600.0,
        gt=0,
        description=(
            "How long a resumable run's stream (`stream_resumable`), or a streamed `/v1` "
            "turn's, is kept for replay after it ends."
        ),
    )
    state_cache_messages: int = Field(
        default=3_000,
        ge=0,
        description=(
            "Messages of recently used sessions' latest state kept in memory per process, so "
            "a turn does not reload its history (about 2.4 kB each; 0 turns the cache off)."
        ),
    )
    stats_retention_days: float = Field(
        default=30.0, gt=0, description="Days of per-turn records kept for agent statistics."
    )
    allow_open: bool = Field(
        default=False,
        description=(
            "Serve without API keys on a non-loopback address (auth is off whenever no key "
            "exists; without this, `serve` refuses to start open on a public address)."
        ),
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description='Origins allowed by CORS, as JSON (`["https://app.example"]`) or `*`.',
    )
    widget_rate_per_key: int = Field(
        default=600,
        ge=1,
        description="Requests a minute one publishable key may make, from all its visitors.",
    )
    widget_rate_per_ip: int = Field(
        default=30, ge=1, description="Requests a minute one visitor IP may make to widgets."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Proxies (IPs or CIDRs) whose X-Forwarded-For is believed for visitor IPs.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body accepted (413 above)."
    )
    host: str = Field(default="127.0.0.1", description="Address `serve` binds to.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `serve` listens on.")
    workers: int = Field(default=1, ge=1, description="Worker processes for `serve`.")
    log_level: str = Field(default="info", description="Log level.")

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        # `*` or a comma-separated list is friendlier in a shell than JSON.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(
                f"pool_min_size ({self.pool_min_size}) exceeds pool_max_size ({self.pool_max_size})"
            )
        return self

    def resolved_default_model(self) -> str:
        """The `provider:name` of the default agent's model."""
        if self.default_model:
            return self.default_model
        if self.openai_api_key is not None and self.openai_api_key.get_secret_value():
            return "openai:gpt-4o-mini"
        return "offline:deterministic"


def env_names() -> dict[str, str]:
    """Map each setting to the environment variable a deployment sets for it."""
    names = {}
    for field_name in Settings.model_fields:
        if field_name == "database_url":
            names[field_name] = "DATABASE_URL"
        else:
            names[field_name] = f"SESSIONGRAPH_{field_name.upper()}"
    return names


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, built once (override in tests by passing your own)."""
    return Settings()
