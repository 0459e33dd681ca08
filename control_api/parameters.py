"""The base of every query, form and header model of a route.

flask-openapi3 reads such a model's JSON schema on every request (to tell lists from single
values); pydantic builds it afresh each time, which cost a single-row prediction more than the
model call. The schema of a model class never changes, so it is built once.
"""

from __future__ import annotations

from pydantic import BaseModel


class Parameters(BaseModel):
    @classmethod
    def model_json_schema(cls, *args, **kwargs) -> dict:
        if args or kwargs:  # the OpenAPI spec's own calls (a reference template): as pydantic builds it
            return super().model_json_schema(*args, **kwargs)
        cached = cls.__dict__.get("_json_schema_built")
        if cached is None:  # per class: a subclass has its own schema
            cached = super().model_json_schema()
            cls._json_schema_built = cached
        return cached
