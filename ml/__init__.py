"""The ML pipeline: data, validation, training, evaluation and the model registry.

Imports nothing from the rest of Operator Console; the API and monitoring build on it.
"""
