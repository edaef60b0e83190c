"""``python -m tests.reliability [--light] [--seed N] [--workdir DIR]`` (``make reliability``).

Prints the campaign's table (Markdown, as RELIABILITY.md shows it) on stdout, progress on
stderr; exits 1 when any row was lost, duplicated or wrong, or a run that had to pass
failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import tempfile
from pathlib import Path

from tests.reliability.campaign import LIGHT, Plan, play


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C: PostgreSQL, the stand-ins and the Prefect server stop."""
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    parser.add_argument("--light", action="store_true", help="the short campaign `make test` runs")
    parser.add_argument("--seed", type=int, default=Plan.seed)
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder)")
    args = parser.parse_args()
    plan = dataclasses.replace(LIGHT if args.light else Plan(), seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="elt-reliability-") as tmp:
        tally = play(plan, args.workdir or Path(tmp))
    print(tally.table())
    return 0 if tally.ok else 1


if __name__ == "__main__":
    sys.exit(main())
