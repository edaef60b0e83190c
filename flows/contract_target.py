"""Contracts rendered for the warehouse and environment they are checked in.

Contracts name their table ``warehouse/<schema>/<table>`` and spell types as DuckDB
does, so one file serves every warehouse and a newcomer finds it by the table's name.
Before Soda reads it, the catalog the warehouse needs goes in front of the schema
(Snowflake database, BigQuery project), literal schema names get the environment's
prefix (``dev_alice_raw_shop``), and names and types follow the warehouse's dialect
(``flows/warehouses/``).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML

from flows.warehouses.base import ContractDialect

if TYPE_CHECKING:
    from flows.config import Settings


@dataclass(frozen=True)
class ContractTarget(ContractDialect):
    """A warehouse's contract dialect, plus where this environment's tables are."""

    catalog: str | None = None
    schema_prefix: str = ""

    @classmethod
    def for_settings(cls, settings: Settings) -> ContractTarget:
        dialect = settings.warehouse.dialect
        return cls(catalog=settings.catalog, schema_prefix=settings.schema_prefix, **vars(dialect))

    @property
    def is_identity(self) -> bool:
        return (
            self.catalog is None
            and not self.schema_prefix
            and not self.data_types
            and not self.upper_case_names
            and not self.unchecked_column_keys
        )

    def render_variables(self, contract_doc: Any, variables: Mapping[str, str]) -> dict[str, str]:
        """Variables as this warehouse needs them: those naming a schema in ``dataset`` upper-cased."""
        rendered = dict(variables)
        if self.upper_case_names and isinstance(contract_doc, dict):
            for name in re.findall(r"\$\{ *var\.(\w+) *\}", str(contract_doc.get("dataset", ""))):
                if name in rendered:
                    rendered[name] = rendered[name].upper()
        return rendered

    def _name(self, name: str) -> str:
        return name.upper() if self.upper_case_names and not name.startswith("${") else name

    def render(self, contract_doc: dict[str, Any]) -> dict[str, Any]:
        """The contract as this warehouse and environment need it (the input is not changed)."""
        rendered = dict(contract_doc)
        datasource, *prefixes, table = str(contract_doc["dataset"]).split("/")
        # a schema given by a variable (${var.MARTS_SCHEMA}) is the flow's, already prefixed
        schemas = [part if part.startswith("${") else self.schema_prefix + part for part in prefixes]
        catalog = [self.catalog] if self.catalog else []
        rendered["dataset"] = "/".join([datasource, *catalog, *map(self._name, schemas), self._name(table)])
        if "columns" in contract_doc:
            rendered["columns"] = [self._render_column(column) for column in contract_doc["columns"]]
        if self.upper_case_names and "checks" in contract_doc:
            rendered["checks"] = [self._render_check(check) for check in contract_doc["checks"] or []]
        return rendered

    def _render_column(self, column: dict[str, Any]) -> dict[str, Any]:
        if isinstance(column.get("name"), str):
            column = column | {"name": self._name(column["name"])}
        if self.unchecked_column_keys:
            column = {key: value for key, value in column.items() if key not in self.unchecked_column_keys}
        data_type = column.get("data_type")
        if not isinstance(data_type, str) or data_type.lower() not in self.data_types:
            return column
        return column | {"data_type": self.data_types[data_type.lower()]}

    def _render_check(self, check: Any) -> Any:
        """A dataset check naming a column (freshness's ``column:``) names it as the warehouse does."""
        if not isinstance(check, dict):
            return check
        return {
            kind: (body | {"column": self._name(body["column"])})
            if isinstance(body, dict) and isinstance(body.get("column"), str)
            else body
            for kind, body in check.items()
        }


@contextmanager
def rendered_contract(contract: Path, contract_doc: Any, target: ContractTarget | None) -> Iterator[Path]:
    """The contract file Soda reads: the file itself, or its rendering for the target."""
    if target is None or target.is_identity:
        yield contract
        return
    with tempfile.TemporaryDirectory(prefix="elt-contract-") as folder:
        rendered = Path(folder) / contract.name
        yaml = YAML(typ="safe", pure=True)
        yaml.default_flow_style = False
        with rendered.open("w") as handle:
            yaml.dump(target.render(contract_doc), handle)
        yield rendered
