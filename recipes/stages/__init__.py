"""The compression stages (distill, prune, quantize, export), one module each.

Import-light on purpose: the stage modules import torch, so
`compressgate.recipes.stages.base.stage_for`
imports them only when a run needs them.
"""
