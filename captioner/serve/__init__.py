"""Captioning behind HTTP: ``captioner.serve.app(captioner)`` is a FastAPI app that batches concurrent
requests (``pip install 'captioner[serve]'``; ``captioner-serve`` runs it with uvicorn)."""

from captioner.serve.endpoints import app

__all__ = ["app"]
