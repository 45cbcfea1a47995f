"""Routes: dags (being built)."""

from fastapi import APIRouter

router = APIRouter()
