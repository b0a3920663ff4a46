"""LangGraph Server API: threads endpoints."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
