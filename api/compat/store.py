"""LangGraph Server API: store endpoints."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
