"""The `tether` command: parses flags into Settings and starts things; no logic here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from tether import __version__
from tether.errors import ConfigError
from tether.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tether",
        description="A self-hosted OpenAI Responses API server with durable, resumable streams.",
    )
    parser.add_argument("--version", action="version", version=f"tether {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Run the API server and its worker.")
    serve.add_argument("--host", help="Address to bind (default 127.0.0.1; env TETHER_HOST).")
    serve.add_argument("--port", type=int, help="Port (default 8000; env TETHER_PORT).")
    serve.add_argument("--store", help="Store URL (default sqlite:///tether.db; env TETHER_STORE).")
    serve.add_argument("--config", help="TOML config file with [server] and [[models]].")
    serve.add_argument("--log-level", help="debug, info, warning or error.")
    serve.add_argument(
        "--access-log", action="store_true", help="Log every request (off by default)."
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.load(
            os.environ,
            {
                "host": args.host,
                "port": args.port,
                "store": args.store,
                "config": args.config,
                "log_level": args.log_level,
            },
        )
    except ConfigError as exc:
        sys.exit(f"tether: {exc}")
    if args.command == "serve":
        serve(settings, access_log=args.access_log)


def serve(settings: Settings, *, access_log: bool = False) -> None:
    import uvicorn

    from tether.api.app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    models = ", ".join(f"{m.name} ({m.provider})" for m in settings.models)
    print(f"tether {__version__}: serving models {models}", flush=True)
    print(f"tether: data in {settings.store}", flush=True)
    print(f"tether: listening on http://{settings.host}:{settings.port}/v1", flush=True)
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            access_log=access_log,
            loop="auto",
            http="auto",
            timeout_graceful_shutdown=10,
        )
    except ConfigError as exc:
        sys.exit(f"tether: {exc}")
