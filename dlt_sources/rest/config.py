"""Read and validate one declarative REST source file (``dlt_sources/rest/<name>.yml``).

The file uses the shape of dlt's ``rest_api`` config; this module accepts the subset
that the Arrow fast path implements (see README.md next to it) and rejects every
other key with an error that names the file and the key, rather than ignoring it.
Secrets are ``{{ secrets.<path> }}`` / ``{{ config.<path> }}`` placeholders resolved
through dlt's config providers when the source is built, never when listed.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlt_sources.common.declared import NAME_RE, OPERATIONS_KEYS, read_declaration, read_operations
from dlt_sources.common.privacy import SourcePrivacy
from dlt_sources.common.schema_policy import POLICIES
from dlt_sources.errors import SourceError
from dlt_sources.spec import FreshnessSla

PLACEHOLDER_RE = re.compile(r"\{\{\s*(secrets|config)\.([A-Za-z0-9_.]+)\s*\}\}")

TOP_KEYS = frozenset({"client", "resource_defaults", "resources", "schema_policy"}) | OPERATIONS_KEYS
CLIENT_KEYS = frozenset({"base_url", "auth", "paginator", "headers"})
RESOURCE_KEYS = frozenset({"name", "endpoint", "primary_key", "write_disposition", "columns"})
ENDPOINT_KEYS = frozenset({"path", "params", "data_selector", "incremental", "paginator"})
INCREMENTAL_KEYS = frozenset(
    {"cursor_path", "start_param", "end_param", "initial_value", "end_value", "type"}
)
WRITE_DISPOSITIONS = frozenset({"append", "replace", "merge"})
AUTH_KEYS: dict[str, frozenset[str]] = {
    "bearer": frozenset({"type", "token"}),
    "api_key": frozenset({"type", "name", "api_key", "location"}),
    "http_basic": frozenset({"type", "username", "password"}),
}
PAGINATOR_KEYS: dict[str, frozenset[str]] = {
    "json_link": frozenset({"type", "next_url_path"}),
    "cursor": frozenset({"type", "cursor_path", "cursor_param"}),
    "offset": frozenset(
        {
            "type",
            "limit",
            "offset",
            "offset_param",
            "limit_param",
            "total_path",
            "maximum_offset",
            "stop_after_empty_page",
        }
    ),
    "page_number": frozenset(
        {"type", "base_page", "page", "page_param", "total_path", "maximum_page", "stop_after_empty_page"}
    ),
    "header_link": frozenset({"type", "links_next_key"}),
    "single_page": frozenset({"type"}),
}
# Column types a YAML may declare; the Arrow table is cast to them.
DATA_TYPES = frozenset({"text", "bigint", "double", "bool", "timestamp", "date", "json"})
COLUMN_KEYS = frozenset({"data_type", "nullable"})


class RestConfigError(SourceError):
    """A declarative source file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Incremental:
    cursor_path: str
    start_param: str | None = None
    end_param: str | None = None
    initial_value: Any = None
    end_value: Any = None


@dataclass(frozen=True)
class Resource:
    name: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    data_selector: str | None = None
    paginator: dict[str, Any] | None = None
    incremental: Incremental | None = None
    primary_key: str | list[str] | None = None
    write_disposition: str = "append"
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RestSourceConfig:
    """A validated file; ``client`` still holds the unresolved placeholders."""

    name: str
    file: Path
    client: dict[str, Any]
    resources: tuple[Resource, ...]
    schema_policy: str = "evolve"
    schedule: str | None = None
    freshness: FreshnessSla | None = None
    # where its tables hold people (dlt_sources/common/privacy.py)
    privacy: SourcePrivacy = field(default_factory=dict)

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(resource.name for resource in self.resources)


def load_file(path: Path) -> RestSourceConfig:
    """Parse and validate one YAML file; raises :class:`RestConfigError`."""
    return parse(read_declaration(path, RestConfigError), path)


def parse(raw: Any, path: Path) -> RestSourceConfig:
    """Validate an already-parsed document (``path`` names the file in errors)."""
    v = _Validator(path)
    doc = v.mapping(raw, "")
    v.only(doc, TOP_KEYS, "")
    client = v.mapping(doc.get("client"), "client")
    v.only(client, CLIENT_KEYS, "client")
    if not isinstance(client.get("base_url"), str) or not client["base_url"]:
        raise v.error("client.base_url", "is required (a URL or a {{ config.… }} placeholder)")
    if "auth" in client:
        v.auth(client["auth"])
    if "paginator" in client:
        v.paginator(client["paginator"], "client.paginator")
    if "headers" in client:
        headers = v.mapping(client["headers"], "client.headers")
        for key, value in headers.items():
            if not isinstance(value, str):
                raise v.error(f"client.headers.{key}", "must be a string")
    defaults = v.mapping(doc.get("resource_defaults", {}), "resource_defaults")
    v.only(defaults, RESOURCE_KEYS - {"name"}, "resource_defaults")
    resources = doc.get("resources")
    if not isinstance(resources, list) or not resources:
        raise v.error("resources", "must be a non-empty list")
    parsed = tuple(v.resource(item, defaults, i) for i, item in enumerate(resources))
    names = [r.name for r in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise v.error("resources", f"duplicate resource name(s): {', '.join(duplicates)}")
    policy = doc.get("schema_policy", "evolve")
    if policy not in POLICIES:
        raise v.error("schema_policy", f"must be one of {', '.join(POLICIES)}, got {policy!r}")
    schedule, freshness, privacy = read_operations(doc, path, RestConfigError)
    return RestSourceConfig(
        name=path.stem,
        file=path,
        client=client,
        resources=parsed,
        schema_policy=policy,
        schedule=schedule,
        freshness=freshness,
        privacy=privacy,
    )


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of mappings (resource over resource_defaults), as dlt does."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _Validator:
    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, problem: str) -> RestConfigError:
        return RestConfigError(f"{self.path}: `{key}` {problem}")

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.error(key or "<document>", f"must be a mapping, got {type(value).__name__}")
        return value

    def only(self, value: dict[str, Any], allowed: frozenset[str], key: str) -> None:
        for name in value:
            if name not in allowed:
                where = f"{key}.{name}" if key else str(name)
                raise self.error(
                    where,
                    "is not supported by the declarative fast path "
                    f"(supported here: {', '.join(sorted(allowed))}); see dlt_sources/rest/README.md",
                )

    def auth(self, auth: Any) -> None:
        auth = self.mapping(auth, "client.auth")
        kind = auth.get("type")
        if kind not in AUTH_KEYS:
            raise self.error("client.auth.type", f"must be one of {', '.join(AUTH_KEYS)}, got {kind!r}")
        self.only(auth, AUTH_KEYS[kind], "client.auth")
        required = {"bearer": ("token",), "api_key": ("api_key",), "http_basic": ("username", "password")}
        for name in required[kind]:
            if not isinstance(auth.get(name), str) or not auth[name]:
                raise self.error(f"client.auth.{name}", "is required (use a {{ secrets.… }} placeholder)")
        if kind == "api_key" and auth.get("location", "header") not in ("header", "query"):
            raise self.error("client.auth.location", "must be header or query")

    def paginator(self, paginator: Any, key: str) -> dict[str, Any]:
        if isinstance(paginator, str):
            paginator = {"type": paginator}
        paginator = self.mapping(paginator, key)
        kind = paginator.get("type")
        if kind not in PAGINATOR_KEYS:
            raise self.error(f"{key}.type", f"must be one of {', '.join(PAGINATOR_KEYS)}, got {kind!r}")
        self.only(paginator, PAGINATOR_KEYS[kind], key)
        if kind == "offset" and not isinstance(paginator.get("limit"), int):
            raise self.error(f"{key}.limit", "is required for the offset paginator (an integer)")
        return paginator

    def resource(self, item: Any, defaults: dict[str, Any], index: int) -> Resource:
        if isinstance(item, str):
            item = {"name": item}
        key = f"resources[{index}]"
        item = self.mapping(item, key)
        self.only(item, RESOURCE_KEYS, key)
        name = item.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise self.error(f"{key}.name", "is required: lower-case letters, digits and underscores")
        key = f"resources[{name}]"
        merged = _merge(defaults, item)
        endpoint = merged.get("endpoint", {})
        if isinstance(endpoint, str):
            endpoint = {"path": endpoint}
        endpoint = self.mapping(endpoint, f"{key}.endpoint")
        self.only(endpoint, ENDPOINT_KEYS, f"{key}.endpoint")
        path = endpoint.get("path", name)
        if not isinstance(path, str):
            raise self.error(f"{key}.endpoint.path", "must be a string")
        params = dict(self.mapping(endpoint.get("params", {}), f"{key}.endpoint.params"))
        incremental = self.incremental(endpoint.get("incremental"), params, key)
        selector = endpoint.get("data_selector")
        if selector is not None and not isinstance(selector, str):
            raise self.error(f"{key}.endpoint.data_selector", "must be a dotted path string")
        paginator = endpoint.get("paginator")
        if paginator is not None:
            paginator = self.paginator(paginator, f"{key}.endpoint.paginator")
        disposition = merged.get("write_disposition", "append")
        if disposition not in WRITE_DISPOSITIONS:
            raise self.error(
                f"{key}.write_disposition", f"must be one of {', '.join(sorted(WRITE_DISPOSITIONS))}"
            )
        primary_key = merged.get("primary_key")
        if primary_key is not None and not (
            isinstance(primary_key, str)
            or (isinstance(primary_key, list) and all(isinstance(k, str) for k in primary_key))
        ):
            raise self.error(f"{key}.primary_key", "must be a column name or a list of them")
        if disposition == "merge" and not primary_key:
            raise self.error(f"{key}.primary_key", "is required with write_disposition: merge")
        columns = self.mapping(merged.get("columns", {}), f"{key}.columns")
        for column, raw_hints in columns.items():
            hints = self.mapping(raw_hints, f"{key}.columns.{column}")
            self.only(hints, COLUMN_KEYS, f"{key}.columns.{column}")
            if hints.get("data_type") not in DATA_TYPES:
                raise self.error(
                    f"{key}.columns.{column}.data_type", f"must be one of {', '.join(sorted(DATA_TYPES))}"
                )
        return Resource(
            name=name,
            path=path,
            params=params,
            data_selector=selector,
            paginator=paginator,
            incremental=incremental,
            primary_key=primary_key,
            write_disposition=disposition,
            columns=columns,
        )

    def incremental(self, block: Any, params: dict[str, Any], key: str) -> Incremental | None:
        """The ``endpoint.incremental`` block, or dlt's ``params: {p: {type: incremental}}`` form."""
        found: list[tuple[dict[str, Any], str]] = []
        if block is not None:
            found.append((self.mapping(block, f"{key}.endpoint.incremental"), f"{key}.endpoint.incremental"))
        for param, value in list(params.items()):
            if isinstance(value, dict):
                where = f"{key}.endpoint.params.{param}"
                if value.get("type") != "incremental":
                    raise self.error(where, "must be a scalar or {type: incremental, cursor_path: …}")
                params.pop(param)
                found.append(({**value, "start_param": param}, where))
        if not found:
            return None
        if len(found) > 1:
            raise self.error(f"{key}.endpoint", "declares more than one incremental cursor")
        spec, where = found[0]
        self.only(spec, INCREMENTAL_KEYS, where)
        if spec.get("type", "incremental") != "incremental":
            raise self.error(f"{where}.type", "must be incremental")
        cursor = spec.get("cursor_path")
        if not isinstance(cursor, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", cursor):
            raise self.error(
                f"{where}.cursor_path",
                "is required and must be a top-level field of the records (nested paths are not supported)",
            )
        return Incremental(
            cursor_path=cursor,
            start_param=spec.get("start_param"),
            end_param=spec.get("end_param"),
            initial_value=spec.get("initial_value"),
            end_value=spec.get("end_value"),
        )


def resolve_placeholders(value: Any, where: str) -> Any:
    """Replace ``{{ secrets.a.b }}`` / ``{{ config.a.b }}`` in strings, recursively.

    Resolution goes through dlt (environment ``A__B``, ``.dlt/secrets.toml``,
    ``.dlt/config.toml``); a missing value raises a :class:`RestConfigError` that
    names the setting and its environment variable but never a value.
    """
    if isinstance(value, dict):
        return {k: resolve_placeholders(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_placeholders(v, where) for v in value]
    if not isinstance(value, str) or "{{" not in value:
        return value

    def lookup(match: re.Match[str]) -> str:
        import dlt

        provider, setting = match.group(1), match.group(2)
        store = dlt.secrets if provider == "secrets" else dlt.config
        try:
            resolved = store.get(setting)
        except Exception:
            resolved = None
        if resolved is None or resolved == "":
            env = setting.upper().replace(".", "__")
            raise RestConfigError(
                f"{where}: `{provider}.{setting}` is not set; set env {env} or `{setting}` in "
                f".dlt/{'secrets' if provider == 'secrets' else 'config'}.toml"
            )
        return str(resolved)

    return PLACEHOLDER_RE.sub(lookup, value)
