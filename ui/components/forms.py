"""Inputs generated from GET /schema: a number input or a select per feature, with units and bounds."""

from __future__ import annotations

import math

import streamlit as st

from ui.api_client import Problem


def widget_key(feature: dict) -> str:
    return f"feature_{feature['name']}"


def label(feature: dict) -> str:
    text = feature.get("description") or feature["name"].replace("_", " ")
    text = text[0].upper() + text[1:]
    return f"{text} ({feature['unit']})" if feature.get("unit") else text


def help_text(feature: dict) -> str:
    unit = f" {feature['unit']}" if feature.get("unit") else ""
    parts = [f"Column `{feature['name']}`."]
    if feature["type"] == "category":
        parts.append(f"One of {', '.join(feature['categories'])}.")
    else:
        low, high = feature.get("min"), feature.get("max")
        if low is not None or high is not None:
            parts.append(f"Allowed {'−∞' if low is None else f'{low:g}'} to "
                         f"{'∞' if high is None else f'{high:g}'}{unit}.")
    if feature.get("typical") is not None:
        parts.append(f"Typical {feature['typical']}{unit}.")
    return " ".join(parts)


def _is_integer(feature: dict) -> bool:
    typical, bounds = feature.get("typical"), (feature.get("min"), feature.get("max"))
    return (isinstance(typical, int) and not isinstance(typical, bool)
            and all(b is None or float(b).is_integer() for b in bounds))


def _step(feature: dict) -> float:
    low, high = feature.get("min"), feature.get("max")
    if low is None or high is None or high <= low:
        return 0.01
    return 10.0 ** min(0, math.floor(math.log10((high - low) / 200)))


def start_value(feature: dict):
    if feature.get("typical") is not None:
        return feature["typical"]
    if feature["type"] == "category":
        return feature["categories"][0]
    low, high = feature.get("min"), feature.get("max")
    if low is not None and high is not None:
        return (low + high) / 2
    return low if low is not None else (high if high is not None else 0.0)


def feature_input(feature: dict):
    """One widget for one feature; its value is what the API expects for that field."""
    if feature["type"] == "category":
        options = feature["categories"]
        typical = str(start_value(feature))
        index = options.index(typical) if typical in options else 0
        return st.selectbox(label(feature), options, index=index, key=widget_key(feature),
                            help=help_text(feature))
    low, high = feature.get("min"), feature.get("max")
    if _is_integer(feature):
        return st.number_input(label(feature), key=widget_key(feature), help=help_text(feature), step=1,
                               min_value=None if low is None else int(low),
                               max_value=None if high is None else int(high),
                               value=int(start_value(feature)))
    step = _step(feature)
    decimals = max(0, -math.floor(math.log10(step)))
    return st.number_input(label(feature), key=widget_key(feature), help=help_text(feature), step=step,
                           format=f"%.{decimals}f", min_value=None if low is None else float(low),
                           max_value=None if high is None else float(high),
                           value=float(start_value(feature)))


def problems_by_feature(details: list[Problem], schema: dict) -> tuple[dict[str, str], list[Problem]]:
    """The API's 422 details for record 0, keyed by the feature they name; the rest as they are."""
    names = {f["name"] for f in schema["features"]}
    named, other = {}, []
    for item in details:
        field = item.field.removeprefix("records[0].")
        if field in names:
            named[field] = item.problem
        else:
            other.append(item)
    return named, other
