"""Prefect Secret blocks as a third place for credentials, next to env vars and secrets.toml.

Why a dlt config provider: every credential is looked up through dlt's config
resolution (sources, destinations, and via ``flows/config.py`` dbt and Soda), so
adding Prefect's Secret blocks as one more provider keeps one lookup path. A dlt
key maps to a block name by joining its sections with dashes:
``sources.stripe.api_key`` → block ``sources-stripe-api-key``.
Enabled with ``ELT_PREFECT_SECRETS=true``; env vars and secrets.toml still win.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import dlt
from dlt.common.configuration.providers.provider import ConfigProvider

ENABLE_SETTING = "ELT_PREFECT_SECRETS"


def block_name(key: str, *sections: str) -> str:
    return "-".join([*sections, key]).lower().replace("_", "-")


@cache
def _load_block(name: str) -> Any:
    """The block's value, or None when no such block exists (cached per process)."""
    from prefect.blocks.system import Secret

    try:
        return Secret.load(name).get()
    except ValueError:  # Prefect's "Unable to find block document named …"
        return None


class PrefectSecretProvider(ConfigProvider):
    def get_value(
        self, key: str, hint: type[Any], pipeline_name: str | None, *sections: str
    ) -> tuple[Any | None, str]:
        name = block_name(key, *sections)
        if pipeline_name or not enabled():  # pipeline-scoped variants are not mapped to blocks
            return None, name
        return _load_block(name), name

    @property
    def supports_secrets(self) -> bool:
        return True

    @property
    def supports_sections(self) -> bool:
        return True

    @property
    def name(self) -> str:
        return "Prefect Secret blocks"


def enabled() -> bool:
    return os.environ.get(ENABLE_SETTING, "").lower() in {"1", "true", "yes"}


def use_prefect_secret_blocks() -> bool:
    """Register the provider once if ``ELT_PREFECT_SECRETS`` is true; says whether it is active."""
    if not enabled():
        return False
    if not any(isinstance(p, PrefectSecretProvider) for p in dlt.config.config_providers):
        dlt.config.register_provider(PrefectSecretProvider())
    return True
