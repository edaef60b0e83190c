"""Snowflake settings resolved once in flows/warehouses/snowflake.py and handed to dbt and Soda.

No warehouse needed: these check what the tools would be given, and that secrets stay out
of every message.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flows.config import ConfigError, environment, load_settings

BASE = "snowflake://elt_loader{login}@acme-xy12345/ANALYTICS?warehouse=LOAD_WH&role=ELT_LOADER"


def settings_for(url: str) -> object:
    with environment({"DESTINATION__SNOWFLAKE__CREDENTIALS": url}):
        return load_settings("snowflake")


@pytest.fixture
def encrypted_key(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa_key.p8"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"open-sesame"),
        )
    )
    return path


def test_password_login_defaults_to_the_public_endpoint() -> None:
    env = settings_for(BASE.format(login=":pw-123")).tool_environment()  # type: ignore[attr-defined]
    assert env["ELT_SNOWFLAKE_HOST"] == "acme-xy12345.snowflakecomputing.com"
    assert (env["ELT_SNOWFLAKE_PORT"], env["ELT_SNOWFLAKE_PROTOCOL"]) == ("443", "https")
    assert (env["ELT_SNOWFLAKE_LOGIN_TIMEOUT"], env["ELT_SNOWFLAKE_NETWORK_TIMEOUT"]) == ("120", "600")
    assert env["ELT_SNOWFLAKE_PASSWORD"] == "pw-123"
    # a key exported by an earlier run in the same process must not win over the password
    assert env["ELT_SNOWFLAKE_PRIVATE_KEY"] == ""


def test_connector_options_in_the_connection_string_reach_dbt_and_soda() -> None:
    url = BASE.format(login=":pw") + "&host=127.0.0.1&port=8080&protocol=http&login_timeout=5"
    env = settings_for(url).tool_environment()  # type: ignore[attr-defined]
    assert (env["ELT_SNOWFLAKE_HOST"], env["ELT_SNOWFLAKE_PORT"]) == ("127.0.0.1", "8080")
    assert (env["ELT_SNOWFLAKE_PROTOCOL"], env["ELT_SNOWFLAKE_LOGIN_TIMEOUT"]) == ("http", "5")


def test_key_pair_login_exports_the_key_as_pem_still_encrypted(encrypted_key: Path) -> None:
    url = BASE.format(login="") + f"&private_key_path={encrypted_key}&private_key_passphrase=open-sesame"
    settings = settings_for(url)
    env = settings.tool_environment()  # type: ignore[attr-defined]
    assert env["ELT_SNOWFLAKE_PRIVATE_KEY"].startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert env["ELT_SNOWFLAKE_PASSWORD"] == ""
    assert settings.soda_datasource.name == "snowflake_key_pair.yml"  # type: ignore[attr-defined]


def test_wrong_passphrase_names_the_setting_not_the_value(encrypted_key: Path) -> None:
    url = BASE.format(login="") + f"&private_key_path={encrypted_key}&private_key_passphrase=wrong-42"
    with pytest.raises(ConfigError) as failure:
        settings_for(url).tool_environment()  # type: ignore[attr-defined]
    assert "PRIVATE_KEY_PASSPHRASE" in str(failure.value) and "wrong-42" not in str(failure.value)


def test_missing_key_file_names_the_setting(tmp_path: Path) -> None:
    url = BASE.format(login="") + f"&private_key_path={tmp_path / 'gone.p8'}&private_key_passphrase=pp-77"
    with pytest.raises(ConfigError) as failure:
        settings_for(url)
    assert "PRIVATE_KEY_PATH" in str(failure.value) and "pp-77" not in str(failure.value)
