"""inca-rag-scope HTTP API: `uvicorn api.server:app` (see docs/api.md).

A thin, read-only layer over `core`: every answer comes from core's reading connection, and
amounts are `value_text` exactly as stored, never parsed, sorted, ranked or summed.
"""
