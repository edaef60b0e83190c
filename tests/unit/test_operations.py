"""The operator audit's rules: which commands are recorded, and what of their arguments."""

from __future__ import annotations

import pytest

from flows.operations import command_path, masked


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (["run", "--source", "shop"], ("run",)),
        (["cdc", "drop", "shop", "--yes"], ("cdc", "drop")),
        (["cdc", "status", "shop"], None),
        (["privacy", "forget", "--subject", "email:a@b.c"], ("privacy", "forget")),
        (["privacy", "map"], None),
        (["ci", "cleanup"], ("ci",)),
        (["status"], None),
        (["--help"], None),
    ],
)
def test_only_commands_that_change_or_hand_out_data_are_recorded(args: list[str], path: tuple | None) -> None:
    assert command_path(args) == path


def test_secrets_and_subjects_never_reach_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__SHOP__PASSWORD", "s3cr3t-value")
    args = [
        "privacy",
        "forget",
        "--subject",
        "email:alice@example.com",
        "--subject=shop_customer:42",
        "--set",
        "token=s3cr3t-value",
        "postgresql://elt:hunter22@db:5432/shop",
    ]
    out = masked(args, lambda text: f"{text.split(':')[0]}:HASH")
    assert out == [
        "privacy",
        "forget",
        "--subject",
        "email:HASH",
        "--subject=shop_customer:HASH",
        "--set",
        "token=***",
        "postgresql://elt:***@db:5432/shop",
    ]
