"""Errors a person can act on. Stage entry points print them without a traceback."""


class PipelineError(Exception):
    """Base for every error the pipeline reports to a person."""


class ParamsError(PipelineError):
    """params.yaml is invalid."""


class DataError(PipelineError):
    """The raw data cannot be read or failed validation."""


class EmissionsError(PipelineError):
    """CodeCarbon did not produce a measurement."""


class RegistryError(PipelineError):
    """A registry operation is not possible (no such version, nothing to roll back to...)."""
