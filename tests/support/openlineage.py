"""Parse OpenLineage events back into the client's own generated classes, strictly.

The client serialises but ships no parser; this one rebuilds an event from JSON through
the generated attrs classes (``openlineage.client.generated``), choosing each facet's
class by its ``_schemaURL`` and refusing any key the class does not declare, so a facet
that is not what its schema URL says fails here. Serialising the result again with the
client's ``Serde`` must give back the same JSON.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
import typing
from enum import Enum
from functools import cache
from typing import Any

import attr
from openlineage.client import generated
from openlineage.client.generated.base import BaseFacet, RunEvent
from openlineage.client.serde import Serde


@cache
def facet_classes() -> dict[str, type[BaseFacet]]:
    """Every generated facet class by the schema URL it declares."""
    classes: dict[str, type[BaseFacet]] = {}
    for module_info in pkgutil.iter_modules(generated.__path__):
        module = importlib.import_module(f"{generated.__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseFacet) and "_get_schema" in vars(cls):
                classes.setdefault(cls._get_schema(), cls)
    return classes


def parse_event(data: dict[str, Any]) -> RunEvent:
    """A run event rebuilt from its JSON; AssertionError naming the path on anything unknown."""
    return _build(RunEvent, data, "event")


def round_trips(data: dict[str, Any]) -> bool:
    """The event parses into the generated classes and serialises back to the same JSON."""
    return Serde.to_dict(parse_event(data)) == data


def _build(cls: type, data: Any, path: str) -> Any:
    assert isinstance(data, dict), f"{path}: expected an object for {cls.__name__}, got {data!r}"
    if issubclass(cls, BaseFacet):
        url = data.get("_schemaURL")
        chosen = facet_classes().get(url)
        assert chosen is not None, f"{path}: no generated facet class has _schemaURL {url!r}"
        assert issubclass(chosen, cls), f"{path}: {chosen.__name__} is not a {cls.__name__}"
        cls = chosen
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in attr.fields(cls)}
    unknown = set(data) - set(fields)
    assert not unknown, f"{path}: {cls.__name__} has no field(s) {sorted(unknown)}"
    arguments = {}
    for name, field in fields.items():
        # the class sets its own schema URL; the round trip compares it with the one read
        if name in data and field.init and name != "_schemaURL":
            arguments[field.alias] = _value(hints[name], data[name], f"{path}.{name}")
    return cls(**arguments)


def _value(hint: Any, value: Any, path: str) -> Any:
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (hint,) = [argument for argument in arguments if argument is not type(None)]
        return _value(hint, value, path)
    if origin is list:
        return [_value(arguments[0], item, f"{path}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        return {key: _value(arguments[1], item, f"{path}.{key}") for key, item in value.items()}
    if inspect.isclass(hint) and issubclass(hint, Enum):
        return hint(value)
    if attr.has(hint):
        return _build(hint, value, path)
    if hint is Any:
        return value
    assert isinstance(value, hint), f"{path}: expected {hint.__name__}, got {value!r}"
    return value
