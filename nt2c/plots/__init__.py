"""Figures of the tutorial, one module per pipeline stage; each function returns a matplotlib Figure."""

from nt2c.plots.common import show_images

__all__ = ["show_images"]
