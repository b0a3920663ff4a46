"""Dependencies shared by the routers, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.requests import HTTPConnection

from api.auth import authenticate, require_admin
from runtime import Runtime
from runtime.keys import Principal

__all__ = ["AdminDep", "PrincipalDep", "RuntimeDep", "get_principal", "get_runtime"]


async def get_runtime(conn: HTTPConnection) -> Runtime:
    """The runtime the lifespan opened (async: a sync dependency costs a thread hop)."""
    runtime: Runtime = conn.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_principal(conn: HTTPConnection, runtime: RuntimeDep) -> Principal:
    """The authenticated caller (see :mod:`api.auth`)."""
    return await authenticate(conn, runtime)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: PrincipalDep) -> Principal:
    """The caller, who must hold the admin role."""
    return require_admin(principal)


AdminDep = Annotated[Principal, Depends(get_admin)]
