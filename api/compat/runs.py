"""LangGraph Server API: runs endpoints."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
