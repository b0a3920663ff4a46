"""The tools this server can give agents: what each does, writes, needs and allows."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PrincipalDep, RuntimeDep
from api.schemas import ErrorBody, Page, ToolPublic

router = APIRouter(prefix="/v1/tools", tags=["agents"], responses={401: {"model": ErrorBody}})


@router.get("", summary="List the registered tools agents may name")
async def list_tools(runtime: RuntimeDep, _: PrincipalDep) -> Page[ToolPublic]:
    return Page(items=[ToolPublic.of(spec) for spec in runtime.tools.specs()])
