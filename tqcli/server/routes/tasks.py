"""Routes: tasks (being built)."""

from fastapi import APIRouter

router = APIRouter()
