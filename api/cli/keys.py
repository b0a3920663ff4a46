"""``keys create`` / ``list`` / ``revoke``: API keys (a secret is shown once); and
``create-publishable`` / ``list-publishable`` / ``revoke-publishable``: widget keys."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from api.cli._common import Subparsers, open_runtime
from runtime.keys import ApiKey

__all__ = ["add_parsers"]

_KEY_COLUMNS = ["key_id", "owner", "roles", "name", "created_at", "revoked_at"]


def _roles(roles: Sequence[str]) -> str:
    return ",".join(roles) or "-"


def _timestamp(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _key_row(key: ApiKey) -> list[str]:
    return [
        key.key_id,
        key.owner,
        _roles(key.roles),
        key.name or "-",
        _timestamp(key.created_at),
        _timestamp(key.revoked_at),
    ]


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def _print_fields(**fields: str) -> None:
    """One ``name:  value`` line per field, the values aligned."""
    for name, value in fields.items():
        print(f"{name + ':':<9}{value}")


async def _keys_create(owner: str, roles: list[str], name: str | None) -> int:
    async with open_runtime() as rt:
        key, secret = await rt.keys.create(owner, roles=roles, name=name)
    _print_fields(key_id=key.key_id, owner=key.owner, roles=_roles(key.roles), name=key.name or "-")
    _print_fields(secret=secret)
    print("This secret will not be shown again: store it now.")
    return 0


async def _keys_list(include_revoked: bool) -> int:
    async with open_runtime() as rt:
        keys = await rt.keys.list(include_revoked=include_revoked)
    _print_table(_KEY_COLUMNS, [_key_row(key) for key in keys])
    return 0


async def _keys_revoke(key_id: str) -> int:
    async with open_runtime() as rt:
        key = await rt.keys.revoke(key_id)
    print(f"revoked {key.key_id} (owner {key.owner})")
    return 0


async def _publishable_create(owner: str, agent: str, origins: list[str], name: str | None) -> int:
    async with open_runtime() as rt:
        key, secret = await rt.widget_keys.create(owner, agent, origins, name=name)
    _print_fields(
        key_id=key.key_id,
        owner=key.owner,
        agent=key.agent_id,
        origins=",".join(key.allowed_origins),
        key=secret,
    )
    print("A publishable key is safe in a web page: it only starts and chats in widget sessions.")
    return 0


async def _publishable_list(include_revoked: bool) -> int:
    async with open_runtime() as rt:
        keys = await rt.widget_keys.list(include_revoked=include_revoked)
    header = ["key_id", "owner", "agent", "origins", "name", "created_at", "revoked_at"]
    rows = [
        [k.key_id, k.owner, k.agent_id, ",".join(k.allowed_origins), k.name or "-"]
        + [_timestamp(k.created_at), _timestamp(k.revoked_at)]
        for k in keys
    ]
    _print_table(header, rows)
    return 0


async def _publishable_revoke(key_id: str) -> int:
    async with open_runtime() as rt:
        key = await rt.widget_keys.revoke(key_id)
    print(f"revoked {key.key_id} (owner {key.owner}, agent {key.agent_id})")
    return 0


def _add_publishable(actions: Any) -> None:
    create = actions.add_parser(
        "create-publishable", help="make a widget key (one agent, allowed origins) and print it"
    )
    create.add_argument("--owner", required=True, help="owner of the agent and the sessions")
    create.add_argument("--agent", required=True, help="the agent the widget chats with")
    create.add_argument(
        "--origin",
        dest="origins",
        action="append",
        required=True,
        help="an allowed page origin, https://host[:port] (repeatable; * allows any)",
    )
    create.add_argument("--name", help="a label for the key")
    create.set_defaults(
        run=lambda a: asyncio.run(_publishable_create(a.owner, a.agent, a.origins, a.name))
    )
    listing = actions.add_parser("list-publishable", help="show the active widget keys")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(run=lambda a: asyncio.run(_publishable_list(a.all)))
    revoke = actions.add_parser("revoke-publishable", help="revoke a widget key at once")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(run=lambda a: asyncio.run(_publishable_revoke(a.key_id)))


def add_parsers(sub: Subparsers) -> None:
    """The ``keys`` command."""
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)

    create = actions.add_parser("create", help="make a key and print its secret, once")
    create.add_argument("--owner", required=True, help="owner of what the key creates")
    create.add_argument(
        "--role",
        dest="roles",
        action="append",
        default=[],
        help="a role (repeatable); 'admin' opens the admin routes",
    )
    create.add_argument("--name", help="a label for the key")
    create.set_defaults(run=lambda a: asyncio.run(_keys_create(a.owner, a.roles, a.name)))

    listing = actions.add_parser("list", help="show the active keys")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(run=lambda a: asyncio.run(_keys_list(a.all)))

    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(run=lambda a: asyncio.run(_keys_revoke(a.key_id)))
    _add_publishable(actions)
