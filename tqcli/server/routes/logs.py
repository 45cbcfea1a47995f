"""Routes: logs (being built)."""

from fastapi import APIRouter

router = APIRouter()
