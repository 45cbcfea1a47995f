"""Routes: dlq (being built)."""

from fastapi import APIRouter

router = APIRouter()
