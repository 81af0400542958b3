"""Turn pydantic's validation errors into Issues users can act on.

Pydantic checks types and unknown fields; this module renders its findings with
Istio field paths, and for an unknown field names the field the user probably meant.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from .errors import Issue, PathPart

M = TypeVar("M", bound=BaseModel)

def _cookie_hint(value: Any) -> str:
    match = json.dumps(value) if isinstance(value, dict) and value else '{regex: ".*name=value.*"}'
    return (
        "Istio has no cookie match field and would drop it, turning this rule into a "
        f"catch-all; match the Cookie header instead: headers: {{cookie: {match}}}"
    )


# Fields users write that Istio does not have: a hint built from what they wrote.
KNOWN_MISTAKES: dict[tuple[str, str], Callable[[Any], str]] = {
    ("HTTPMatchRequest", "cookie"): _cookie_hint,
}


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional so we reach the model/list/dict underneath."""
    while True:
        origin = get_origin(tp)
        if origin is typing.Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _field_by_alias(model: type[BaseModel], name: str) -> Any | None:
    for attr, info in model.model_fields.items():
        if name in (info.alias, attr):
            return info.annotation
    return None


def model_at(model: type[BaseModel], loc: tuple[PathPart, ...]) -> type[BaseModel] | None:
    """The model class found by following `loc` from `model`, if it leads to one."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        origin = get_origin(current)
        if origin in (list, tuple):
            current = get_args(current)[0]
        elif origin is dict:
            current = get_args(current)[1]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            if isinstance(part, int):
                return None
            current = _field_by_alias(current, part)
            if current is None:
                return None
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or attr for attr, info in model.model_fields.items()]


def suggest(name: str, candidates: list[str]) -> str | None:
    """The candidate closest to `name`, also catching snake_case and wrong capitalisation."""
    folded = {c.lower().replace("_", ""): c for c in candidates}
    key = name.lower().replace("_", "").replace("-", "")
    if key in folded:
        return folded[key]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def _type_name(model: type[BaseModel] | None) -> str:
    return model.__name__ if model is not None else ""


def issues_from_validation_error(
    error: ValidationError, model: type[BaseModel], prefix: tuple[PathPart, ...]
) -> list[Issue]:
    issues: list[Issue] = []
    for err in error.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if isinstance(p, int | str))
        ctx = err.get("ctx") or {}
        kind = err["type"]
        hint: str | None = None
        if kind == "extra_forbidden":
            parent = model_at(model, loc[:-1])
            name = str(loc[-1])
            message = f"unknown field {name!r}"
            mistake = KNOWN_MISTAKES.get((_type_name(parent), name))
            hint = mistake(err.get("input")) if mistake else None
            if hint is None and parent is not None:
                allowed = field_names(parent)
                close = suggest(name, allowed)
                hint = (
                    f"did you mean {close!r}?"
                    if close
                    else "known fields: " + ", ".join(sorted(allowed))
                )
        elif kind == "istio":
            message = str(ctx.get("message", err["msg"]))
            loc = loc + tuple(ctx.get("at") or ())
            hint = ctx.get("hint") or None
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "literal_error":
            message = f"invalid value: {err['msg'][0].lower()}{err['msg'][1:]}"
        else:
            text = err["msg"]
            message = text[len("Value error, ") :] if text.startswith("Value error, ") else text
            message = message[0].lower() + message[1:] if message else message
        issues.append(Issue(path=prefix + loc, message=message, hint=hint))
    return issues


def parse_model(
    model: type[M],
    data: Any,
    *,
    prefix: tuple[PathPart, ...] = (),
    context: dict[str, Any] | None = None,
) -> tuple[M | None, list[Issue]]:
    """Validate `data` against `model`; return the model or the issues found."""
    try:
        return model.model_validate(data, context=context or {}, by_alias=True, by_name=False), []
    except ValidationError as e:
        return None, issues_from_validation_error(e, model, prefix)
