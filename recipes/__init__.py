"""The recipe language: manifest models, YAML loading, JSON Schema, trust files, signing."""
