"""Deployment: packed 1-bit export (``.bnx``), x86 XNOR/popcount kernels, and the packed runtime."""

from bnext.deploy.export import ExportReport, export_checkpoint
from bnext.deploy.runtime import PackedModel, load

__all__ = ["ExportReport", "PackedModel", "export_checkpoint", "load"]
