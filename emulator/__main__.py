"""`python -m emulator serve --scenario NAME|FILE [--port N] [--time-scale X]` and `generate`."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from emulator.core.app import Emulator
from emulator.core.server import EmulatorServer
from emulator.scenario import ScenarioError, load_scenario_file


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a scenario over HTTPS until interrupted")
    serve.add_argument("--scenario", default="demo", help="a shipped scenario name or a YAML/JSON file")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument(
        "--time-scale", type=_positive_float, default=1.0, help="emulated seconds per real second"
    )
    generate = commands.add_parser("generate", help="print a scenario for a large synthetic estate")
    generate.add_argument("--subscriptions", type=int, default=1)
    generate.add_argument("--vaults-per-subscription", type=int, default=1)
    generate.add_argument("--vms-per-vault", type=int, default=100)
    generate.add_argument("--stuck-percent", type=float, default=10.0)
    args = parser.parse_args(argv)

    if args.command == "generate":
        document = {
            "name": "generated",
            "generate": {
                "subscriptions": args.subscriptions,
                "vaults_per_subscription": args.vaults_per_subscription,
                "vms_per_vault": args.vms_per_vault,
                "stuck_percent": args.stuck_percent,
            },
        }
        print(json.dumps(document, indent=2))
        return 0

    emulator = Emulator(time_scale=args.time_scale)
    try:
        scenario = load_scenario_file(args.scenario)
        scenario.setdefault("clock", {})["scale"] = args.time_scale
        emulator.load_scenario(scenario)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = EmulatorServer(emulator, port=args.port)
    print(json.dumps(server.describe()), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
