"""The rules of encryption in transit, without a server: plain http only to this machine, a
refused certificate classified as a setting to fix (never retried), the CA file checked up
front, and MySQL's TLS options carried over to connectorx as strictly as PyMySQL reads them.
The same rules against real servers: tests/integration/test_tls.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from dlt_sources.common.http import (
    ApiClient,
    InsecureTransport,
    SourceSettings,
    check_transport,
    is_loopback,
    transport_settings,
)
from dlt_sources.errors import (
    UNTRUSTED,
    WRONG_HOST,
    SourceError,
    SourceUnreachable,
    connection_error,
    refused_certificate,
)
from dlt_sources.github import github_source
from dlt_sources.rest import declared_sources
from dlt_sources.sql_database.reader import connectorx_uri, shown_url
from dlt_sources.stripe import stripe_source

NAMES = SourceSettings(
    source="tickets", credential_setting="sources.tickets.token", base_url_setting="sources.tickets.base_url"
)
INSECURE_SETTING = "`sources.tickets.allow_insecure_http` (env SOURCES__TICKETS__ALLOW_INSECURE_HTTP)"


@pytest.mark.parametrize("host", ["localhost", "LocalHost", "127.0.0.1", "127.20.30.40", "::1"])
def test_this_machine_is_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["api.example.com", "10.0.0.7", "128.0.0.1", "::2", "localhost.example.com", "0.0.0.0", ""]
)
def test_any_other_host_is_not(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/api", "http://localhost/v1", "http://[::1]:9000", "https://api.example.com/v1"],
)
def test_https_and_plain_http_to_this_machine_are_allowed(url: str) -> None:
    check_transport(url, NAMES, allow_insecure_http=False, where="`sources.tickets.base_url`")


def test_plain_http_to_another_host_is_refused_naming_the_setting_that_allows_it() -> None:
    with pytest.raises(InsecureTransport) as refused:
        check_transport("http://api.example.com/v1", NAMES, allow_insecure_http=False, where="the base URL")
    message = str(refused.value)
    assert message.startswith("tickets source: the base URL is plain http to api.example.com")
    assert INSECURE_SETTING in message and "\n" not in message
    check_transport("http://api.example.com/v1", NAMES, allow_insecure_http=True, where="the base URL")


def test_the_client_refuses_before_any_request_and_checks_every_link() -> None:
    with pytest.raises(InsecureTransport, match=r"`sources\.tickets\.base_url`"):
        ApiClient("http://10.1.2.3/api", NAMES)
    client = ApiClient("https://api.example.com", NAMES)
    assert client.url_for("https://api.example.com/next?page=2") == "https://api.example.com/next?page=2"
    with pytest.raises(InsecureTransport, match=r"the link http://api\.example\.com/next is plain http"):
        client.url_for("http://api.example.com/next?page=2&token=s3cret")
    assert ApiClient("http://api.example.com", NAMES, allow_insecure_http=True).requests_made == 0


def test_a_missing_ca_bundle_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    with pytest.raises(InsecureTransport) as refused:
        ApiClient("https://api.example.com", NAMES, ca_bundle=str(missing))
    assert f"`sources.tickets.ca_bundle` (env SOURCES__TICKETS__CA_BUNDLE) names {missing}" in str(
        refused.value
    )
    missing.write_text("-----BEGIN CERTIFICATE-----\n")
    assert ApiClient("https://api.example.com", NAMES, ca_bundle=str(missing)).ca_bundle == str(missing)


def test_declarative_sources_read_both_settings_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert transport_settings("tickets") == {"ca_bundle": None, "allow_insecure_http": False}
    monkeypatch.setenv("SOURCES__TICKETS__CA_BUNDLE", "/etc/ssl/our-ca.pem")
    monkeypatch.setenv("SOURCES__TICKETS__ALLOW_INSECURE_HTTP", "true")
    assert transport_settings("tickets") == {"ca_bundle": "/etc/ssl/our-ca.pem", "allow_insecure_http": True}


REST_YAML = """
client:
  base_url: "{{ config.sources.tickets.base_url }}"
  auth: {type: bearer, token: "{{ secrets.sources.tickets.token }}"}
resources: [tickets]
"""


@pytest.mark.parametrize("name", ["stripe", "github", "tickets"])
def test_every_api_source_refuses_plain_http_to_another_host_unless_allowed(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tickets.yml").write_text(REST_YAML)
    factories = {
        "stripe": stripe_source,
        "github": lambda: github_source(repositories=["octo/repo"]),
        "tickets": declared_sources(tmp_path)["tickets"].factory,
    }
    prefix = f"SOURCES__{name.upper()}__"
    for key, value in {"API_KEY": "sk_test_1", "ACCESS_TOKEN": "ghp_1", "TOKEN": "t0ken-1"}.items():
        monkeypatch.setenv(prefix + key, value)
    monkeypatch.setenv(prefix + "BASE_URL", "http://api.example.com")
    with pytest.raises(InsecureTransport) as refused:
        factories[name]()
    assert f"`sources.{name}.allow_insecure_http` (env {prefix}ALLOW_INSECURE_HTTP)" in str(refused.value)
    monkeypatch.setenv(prefix + "ALLOW_INSECURE_HTTP", "true")
    factories[name]()  # built: no request was made to refuse


@pytest.mark.parametrize(
    ("reason", "refusal"),
    [
        (
            'connection to server at "db" (10.0.0.5), port 5432 failed: SSL error: certificate verify failed',
            UNTRUSTED,
        ),
        (
            'connection to server at "db", port 5432 failed: root certificate file "/ca.pem" does not exist',
            UNTRUSTED,
        ),
        (
            'connection to server at "10.0.0.5", port 5432 failed: server certificate for "db" '
            'does not match host name "10.0.0.5"',
            WRONG_HOST,
        ),
        (
            "(2003, \"Can't connect to MySQL server on 'db' ([SSL: CERTIFICATE_VERIFY_FAILED] certificate "
            'verify failed: self-signed certificate in certificate chain (_ssl.c:1006))")',
            UNTRUSTED,
        ),
        (
            "certificate verify failed: IP address mismatch, certificate is not valid for '10.0.0.5'",
            WRONG_HOST,
        ),
        ("Hostname mismatch, certificate is not valid for 'api.example.com'.", WRONG_HOST),
        ('connection to server at "db", port 5432 failed: Connection refused', None),
        ('FATAL:  password authentication failed for user "elt"', None),
    ],
)
def test_a_refused_certificate_is_recognised_in_each_driver_s_words(reason: str, refusal: str | None) -> None:
    assert refused_certificate(reason) == refusal


def test_a_refused_certificate_is_a_setting_to_fix_not_an_outage() -> None:
    prefix = "source shop: cannot connect to mysql://elt@db/shop (setting sources.shop.credentials)"
    untrusted = connection_error(
        prefix, "certificate verify failed: unable to get local issuer certificate", "ssl_ca"
    )
    assert type(untrusted) is SourceError and not isinstance(untrusted, SourceUnreachable)
    assert str(untrusted).endswith(
        "; set `ssl_ca` in the URL to the file of the CA that signed the server's certificate"
    )
    wrong_host = connection_error(prefix, 'server certificate for "db" does not match host name "10.0.0.5"')
    assert str(wrong_host).endswith("; the URL's host must be a name the server's certificate holds")
    assert isinstance(connection_error(prefix, "Connection refused"), SourceUnreachable)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("", ""),
        ("?ssl_ca=/etc/ssl/ca.pem", "?ssl-ca=%2Fetc%2Fssl%2Fca.pem&ssl-mode=VERIFY_IDENTITY"),
        (
            "?ssl_ca=/etc/ssl/ca.pem&ssl_check_hostname=false",
            "?ssl-ca=%2Fetc%2Fssl%2Fca.pem&ssl-mode=VERIFY_CA",
        ),
        ("?charset=utf8mb4", "?charset=utf8mb4"),
    ],
)
def test_connectorx_verifies_mariadb_as_pymysql_does(options: str, expected: str) -> None:
    url = sa.make_url(f"mysql://elt:pw@db:3306/shop{options}")
    assert connectorx_uri(url, "shop", "sources.shop.credentials") == f"mysql://elt:pw@db:3306/shop{expected}"


def test_a_tls_option_connectorx_cannot_honour_is_refused_not_dropped() -> None:
    url = sa.make_url("mysql://elt:pw@db/shop?ssl_ca=/ca.pem&ssl_cert=/client.pem&ssl_key=/client.key")
    with pytest.raises(
        SourceError, match=r"connectorx cannot use ssl_cert, ssl_key of `sources.shop.credentials`"
    ):
        connectorx_uri(url, "shop", "sources.shop.credentials")


def test_messages_show_the_tls_options_but_no_secret() -> None:
    url = sa.make_url("postgresql://elt:pw1@db/shop?sslmode=verify-full&sslrootcert=/ca.pem&sslpassword=pw2")
    assert shown_url(url) == "postgresql://elt:***@db/shop?sslmode=verify-full&sslrootcert=%2Fca.pem"
