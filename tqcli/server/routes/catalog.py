"""Routes: catalog (being built)."""

from fastapi import APIRouter

router = APIRouter()
