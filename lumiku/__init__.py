"""Lumiku: credits, avatars, posed image generation and live progress, as one trio service."""

from __future__ import annotations

__version__ = "0.1.0"
