"""Deployment: ``.bnx`` v2 export (a self-describing graph with 1-bit weights) and running it with the C++
runtime (``bnext_runtime``) or, without it, with torch reference ops."""

from bnext.deploy.export import ExportReport, export_checkpoint
from bnext.deploy.runtime import PackedModel, load

__all__ = ["ExportReport", "PackedModel", "export_checkpoint", "load"]
