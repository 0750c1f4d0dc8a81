"""`python -m forwarder`: the forwarder's image entry (`torghut forwarder` locally).

Settings come from `TORGHUT_FWD_*` environment variables (docs/forwarder.md).
"""

import argparse
import sys

from forwarder.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forwarder",
        description="Alpaca market-data WebSocket -> Kafka forwarder",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
