"""LangGraph Server API: assistants endpoints."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
