"""Running recipes: the engine that turns a verified recipe into content-addressed variants, the
stage cache, the isolated worker and its pinned environments, reproduction and on-demand
evaluation.
"""
