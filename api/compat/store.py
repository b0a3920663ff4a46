"""LangGraph Server API: the key-value store, on LangGraph's ``AsyncPostgresStore``.

The store lives in the same database (its tables are set up with the migrations). Every
namespace is stored under one more leading label naming the caller's owner, and stripped
from what comes back, so owners never see, overwrite or list each other's items. No
semantic index and no TTL are configured: ``query`` is ignored and ``ttl`` refused.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import PrincipalDep, RuntimeDep
from runtime.db import MAX_OFFSET_LIMIT
from runtime.errors import InvalidInput

router = APIRouter(tags=["langgraph: store"])

Namespace = list[str]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PutItem(_Lenient):
    """``PUT /store/items``."""

    namespace: Namespace = Field(max_length=20)
    key: str = Field(min_length=1, max_length=1000)
    value: dict[str, Any]
    index: Any = None
    ttl: float | None = None


class DeleteItem(_Lenient):
    """``DELETE /store/items``."""

    namespace: Namespace = Field(max_length=20)
    key: str = Field(min_length=1, max_length=1000)


class SearchItems(_Lenient):
    """``POST /store/items/search``."""

    namespace_prefix: Namespace = Field(default_factory=list, max_length=20)
    filter: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=MAX_OFFSET_LIMIT)
    offset: int = Field(default=0, ge=0)
    query: str | None = None
    refresh_ttl: bool | None = None


class ListNamespaces(_Lenient):
    """``POST /store/namespaces``."""

    prefix: Namespace | None = Field(default=None, max_length=20)
    suffix: Namespace | None = Field(default=None, max_length=20)
    max_depth: int | None = Field(default=None, ge=1, le=100)
    limit: int = Field(default=100, ge=1, le=MAX_OFFSET_LIMIT)
    offset: int = Field(default=0, ge=0)


def _owner_label(owner: str) -> str:
    # Labels may not contain "." (the store joins them with it).
    return "owner:" + owner.replace("%", "%25").replace(".", "%2E")


def _scoped(owner: str, namespace: Namespace, field: str) -> tuple[str, ...]:
    for label in namespace:
        if not isinstance(label, str) or not label or "." in label or "\x00" in label:
            raise InvalidInput(
                f"namespace label {label!r} must be a non-empty string without periods",
                field=field,
            )
    return (_owner_label(owner), *namespace)


def _key(key: str) -> str:
    # The store's batch runner would turn Postgres' refusal of NUL into a 500.
    if "\x00" in key:
        raise InvalidInput("an item key may not contain NUL characters", field="key")
    return key


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "namespace": item["namespace"][1:]}


@router.put("/store/items", status_code=204, summary="Store or replace an item")
async def put_item(runtime: RuntimeDep, principal: PrincipalDep, body: PutItem) -> Response:
    if not body.namespace:
        raise InvalidInput("namespace must name at least one label", field="namespace")
    if body.ttl is not None:
        raise InvalidInput("item TTLs are not supported by this server", field="ttl")
    namespace = _scoped(principal.owner, body.namespace, "namespace")
    await runtime.store.aput(namespace, _key(body.key), body.value)
    return Response(status_code=204)


@router.get("/store/items", summary="Get an item (null when there is none)")
async def get_item(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    key: Annotated[str, Query(min_length=1, max_length=1000)],
    namespace: Annotated[str, Query(max_length=2000)] = "",
    refresh_ttl: Annotated[bool | None, Query()] = None,
) -> dict[str, Any] | None:
    labels = namespace.split(".") if namespace else []
    item = await runtime.store.aget(_scoped(principal.owner, labels, "namespace"), _key(key))
    return None if item is None else _public(item.dict())


@router.delete("/store/items", status_code=204, summary="Delete an item")
async def delete_item(runtime: RuntimeDep, principal: PrincipalDep, body: DeleteItem) -> Response:
    namespace = _scoped(principal.owner, body.namespace, "namespace")
    await runtime.store.adelete(namespace, _key(body.key))
    return Response(status_code=204)


@router.post("/store/items/search", summary="Items under a namespace prefix")
async def search_items(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    body: Annotated[SearchItems | None, Body()] = None,
) -> dict[str, Any]:
    body = body or SearchItems()
    prefix = _scoped(principal.owner, body.namespace_prefix, "namespace_prefix")
    try:
        items = await runtime.store.asearch(
            prefix, filter=body.filter, limit=body.limit, offset=body.offset
        )
    except ValueError as exc:  # the store's refusal of a filter (an unknown $operator)
        raise InvalidInput(f"filter: {exc}", field="filter") from exc
    return {"items": [_public(i.dict()) for i in items]}


@router.post("/store/namespaces", summary="Namespaces in use")
async def list_namespaces(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    body: Annotated[ListNamespaces | None, Body()] = None,
) -> dict[str, Any]:
    body = body or ListNamespaces()
    prefix = _scoped(principal.owner, body.prefix or [], "prefix")
    suffix = tuple(_scoped(principal.owner, body.suffix, "suffix")[1:]) if body.suffix else None
    found = await runtime.store.alist_namespaces(
        prefix=prefix,
        suffix=suffix,
        max_depth=None if body.max_depth is None else body.max_depth + 1,
        limit=body.limit,
        offset=body.offset,
    )
    return {"namespaces": [list(ns[1:]) for ns in found]}
