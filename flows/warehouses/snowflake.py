"""Snowflake: password or key-pair login, resolved once and handed to dlt, dbt and Soda.

The credentials are dlt's ``SnowflakeCredentials`` (``DESTINATION__SNOWFLAKE__CREDENTIALS``
as a connection string or its fields). The connector is imported only inside functions:
it is an optional extra (``uv sync --extra snowflake``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from flows.errors import ConfigError, cause_chain
from flows.setting_values import bool_setting, int_setting
from flows.warehouses.base import ContractDialect, PublishStrategy, Warehouse, double_quoted

if TYPE_CHECKING:
    from flows.config import Settings

# Connector options dlt passes through from the connection string's query
# (``snowflake://…/DB?host=…&login_timeout=30``); dbt and Soda get the same values.
_CONNECTOR_OPTIONS = ("host", "port", "protocol", "login_timeout", "network_timeout")

# snowflake-connector-python error numbers: the login was refused (bad password, key or
# user) or the account's endpoint never answered; anything else is not a settings problem.
_LOGIN_REFUSED = frozenset({390100, 390144, 390101, 390102, 390156, 394300, 394304})
_UNREACHABLE = frozenset({250001, 250003, 251011, 251012})


class Snowflake(Warehouse):
    name: ClassVar[str] = "snowflake"
    dialect: ClassVar[ContractDialect] = ContractDialect(
        data_types={"json": "variant", "timestamp with time zone": "timestamp_tz"},
        # Snowflake stores the names dlt and dbt create in upper case, and Soda quotes every
        # name as written ("raw_shop"."orders" does not exist there). (The emulator's DuckDB
        # ignores case in quoted names, but its INFORMATION_SCHEMA does not: a lower-case
        # contract ends its schema check NOT_EVALUATED.)
        upper_case_names=True,
    )
    publish_strategy: ClassVar[PublishStrategy] = PublishStrategy.SCHEMA_SWAP

    def resolve_credentials(self) -> Any:
        from dlt.common.configuration import resolve_configuration
        from dlt.common.configuration.exceptions import ConfigFieldMissingException
        from dlt.destinations.impl.snowflake.configuration import SnowflakeCredentials

        spec = SnowflakeCredentials()
        try:
            return resolve_configuration(spec, sections=("destination", self.name))
        except ValueError:
            if spec.private_key_path:
                raise ConfigError(
                    "DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY_PATH: no readable PEM private key at "
                    f"{spec.private_key_path!r}"
                ) from None
            raise
        except ConfigFieldMissingException as exc:
            missing = ", ".join(f"DESTINATION__SNOWFLAKE__CREDENTIALS__{name.upper()}" for name in exc.traces)
            raise ConfigError(
                f"snowflake credentials are incomplete: set {missing} "
                "(or [destination.snowflake.credentials] in .dlt/secrets.toml)"
            ) from None

    def dlt_destination(self, settings: Settings) -> Any:
        import dlt

        return dlt.destinations.snowflake(
            credentials=settings.credentials,
            # dlt writes its own state tables in the preferred format: parquet too, not jsonl
            preferred_loader_file_format=self.loader_file_format,
            supports_multiple_statements=bool_setting("ELT_SNOWFLAKE_MULTIPLE_STATEMENTS", True),
            # the contracts' "timestamp with time zone" is TIMESTAMP_TZ to Soda; dlt defaults to _LTZ
            use_timestamp_tz=True,
        )

    def tool_environment(self, settings: Settings) -> dict[str, str]:
        """Snowflake settings for dbt and Soda, from the one resolved set of dlt credentials.

        Password or key pair: a key (from ``private_key`` or ``private_key_path``) is checked
        here, so a wrong passphrase fails before any tool connects, and handed on as PEM, the
        one form dbt and Soda both read. Host, port and protocol default to the account's
        public endpoint. Timeouts default to 120 s to log in (the connector's own default) and
        600 s per request (the connector has none; long queries are polled, so a request that
        takes longer hangs): Soda's data source needs a number, never an empty value.
        """
        creds = settings.credentials
        options = {name: str((creds.query or {}).get(name) or "") for name in _CONNECTOR_OPTIONS}
        env = {
            "ELT_SNOWFLAKE_ACCOUNT": creds.host,
            "ELT_SNOWFLAKE_USER": creds.username or "",
            "ELT_SNOWFLAKE_DATABASE": creds.database,
            "ELT_SNOWFLAKE_WAREHOUSE": creds.warehouse or "",
            "ELT_SNOWFLAKE_ROLE": creds.role or "",
            "ELT_SNOWFLAKE_HOST": options["host"] or _public_host(creds),
            "ELT_SNOWFLAKE_PORT": options["port"] or "443",
            "ELT_SNOWFLAKE_PROTOCOL": options["protocol"] or "https",
            "ELT_SNOWFLAKE_LOGIN_TIMEOUT": options["login_timeout"] or "120",
            "ELT_SNOWFLAKE_NETWORK_TIMEOUT": options["network_timeout"] or "600",
        }
        if creds.private_key:
            env["ELT_SNOWFLAKE_PRIVATE_KEY"] = _private_key_pem(
                str(creds.private_key), creds.private_key_passphrase
            )
            env["ELT_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"] = str(creds.private_key_passphrase or "")
            env["ELT_SNOWFLAKE_PASSWORD"] = ""
        else:
            # cleared, or a key exported by an earlier run in this process would win over the password
            env |= {"ELT_SNOWFLAKE_PRIVATE_KEY": "", "ELT_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": ""}
            env["ELT_SNOWFLAKE_PASSWORD"] = creds.password or ""
        return env

    def catalog(self, settings: Settings) -> str | None:
        return settings.credentials.database

    def soda_datasource(self, settings: Settings) -> str:
        # Soda picks the login method from the keys present, so key-pair has its own file
        return "snowflake_key_pair" if settings.credentials.private_key else self.name

    def login_error(self, settings: Settings, exc: BaseException) -> ConfigError | None:
        """The connector's refused-login and no-answer error numbers, named after the setting."""
        creds = settings.credentials
        for error in cause_chain(exc):
            errno = getattr(error, "errno", None)
            if not type(error).__module__.startswith("snowflake.connector") or errno is None:
                continue
            if errno in _LOGIN_REFUSED:
                return ConfigError(
                    f"snowflake refused the login of user {creds.username!r} to account {creds.host!r} "
                    f"(error {errno}): check the password or private key in "
                    "DESTINATION__SNOWFLAKE__CREDENTIALS (…__PASSWORD, …__PRIVATE_KEY_PATH / …__PRIVATE_KEY "
                    "and …__PRIVATE_KEY_PASSPHRASE)"
                )
            if errno in _UNREACHABLE:
                query = creds.query or {}
                endpoint = f"{query.get('host') or _public_host(creds)}:{query.get('port') or 443}"
                return ConfigError(
                    f"snowflake account {creds.host!r} did not answer at {endpoint} (error {errno}): "
                    "check the account in DESTINATION__SNOWFLAKE__CREDENTIALS (…__HOST) "
                    "and any host/port options in it"
                )
        return None

    def drop_schema_sql(self, settings: Settings, schema: str) -> str:
        return f"drop schema if exists {self._schema(settings, schema)} cascade"

    def lineage_namespace(self, settings: Settings) -> str:
        """``snowflake://<account>``: OpenLineage names Snowflake data sources by account."""
        return f"snowflake://{settings.credentials.host}"

    def quoted_table(self, settings: Settings, schema: str, table: str) -> str:
        return f"{self._schema(settings, schema)}.{_name(table)}"

    def quoted_column(self, column: str) -> str:
        return _name(column)

    def text_sql(self, column: str, data_type: str) -> str:
        """A VARIANT (dlt's JSON) as its JSON text: casting an object to VARCHAR fails."""
        if data_type.lower() in _SEMI_STRUCTURED:
            return f"to_json({column})"
        return f"cast({column} as varchar)"

    def json_field_sql(self, column: str, field: str) -> str:
        return f"cast(get_path({column}, '{field}') as varchar)"

    def retention_sql(self, settings: Settings, tables: Sequence[tuple[str, str]]) -> list[str]:
        """Each table's Time Travel dropped (retention 0 moves the old versions on at once),
        then set to ``privacy.time_travel_days`` (default 1). Fail-safe keeps permanent tables'
        old versions 7 more days, readable by Snowflake support only (README: Privacy)."""
        days = int_setting("PRIVACY__TIME_TRAVEL_DAYS", 1)
        statements = []
        for schema, table in tables:
            name = f"{self._schema(settings, schema)}.{_name(table)}"
            statements += [
                f"alter table {name} set data_retention_time_in_days = 0",
                f"alter table {name} set data_retention_time_in_days = {days}",
            ]
        return statements

    def grant_select_sql(self, settings: Settings, schema: str, grantee: str) -> tuple[str, ...] | None:
        """``grantee`` is a role; tables created in the schema later are granted too."""
        qualified, role = self._schema(settings, schema), _name(grantee)
        return (
            f"grant usage on schema {qualified} to role {role}",
            f"grant select on all tables in schema {qualified} to role {role}",
            f"grant select on future tables in schema {qualified} to role {role}",
        )

    def mask_column_sql(
        self, settings: Settings, schema: str, table: str, column: str, policy: str
    ) -> str | None:
        """``policy``: the qualified name of an existing masking policy, as SQL (``gov.policies.email``)."""
        table_name = f"{self._schema(settings, schema)}.{_name(table)}"
        return f"alter table {table_name} modify column {_name(column)} set masking policy {policy}"

    def _schema(self, settings: Settings, schema: str) -> str:
        return f"{_name(settings.credentials.database)}.{_name(schema)}"


_SEMI_STRUCTURED = ("variant", "object", "array")


def _name(identifier: str) -> str:
    """A name as dlt and dbt create it on Snowflake: upper case, quoted."""
    return double_quoted(identifier.upper())


def _public_host(creds: Any) -> str:
    return f"{creds.host}.snowflakecomputing.com"


def _private_key_pem(key: str, passphrase: str | None) -> str:
    """The key as PEM (PKCS#8, still encrypted with its passphrase when it has one).

    dlt accepts PEM or base64 DER; Soda reads only PEM. The error names the setting, never the key.
    """
    import base64

    from cryptography.hazmat.primitives import serialization

    password = passphrase.encode() if passphrase else None
    try:
        if key.lstrip().startswith("-----BEGIN"):
            loaded = serialization.load_pem_private_key(key.encode(), password=password)
        else:
            loaded = serialization.load_der_private_key(base64.b64decode(key), password=password)
    except (ValueError, TypeError):
        raise ConfigError(
            "DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY (or PRIVATE_KEY_PATH) is not a readable "
            "private key, or DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY_PASSPHRASE does not open it"
        ) from None
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()
