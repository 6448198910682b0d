"""Settings: one frozen object, each field declared once with its env var and doc.

Precedence, highest first: command-line flags, environment (`TETHER_*`), the
config file's `[server]` table, the defaults below. The config file (TOML) also
holds the models:

    [server]
    heartbeat_seconds = 15

    [[models]]
    name = "llama"
    provider = "chat"
    base_url = "http://127.0.0.1:8001/v1"

The environment is passed in (never read at import time).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tether.errors import ConfigError
from tether.providers.registry import DEFAULT_MODELS, ModelConfig


def _setting(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    host: str = _setting("127.0.0.1", "Address to bind.")
    port: int = _setting(8000, "Port to bind.")
    store: str = _setting(
        "sqlite:///tether.db",
        "Store URL: sqlite:///path.db (default ./tether.db), postgresql://user@host/db"
        "[?schema=NAME], redis://host:6379/0[?prefix=NAME] or memory://.",
    )
    zero_data_retention: bool = _setting(
        False,
        "Write nothing to disk: responses live in memory only while their request is "
        "open; store=true and background=true are refused.",
    )
    worker: bool = _setting(
        True, "Run a worker in the API process (`tether serve --no-worker`: API only)."
    )
    config: str | None = _setting(None, "Path of a TOML config file ([server], [[models]]).")
    sse_done: bool = _setting(True, "End SSE streams with `data: [DONE]` (Open Responses).")
    heartbeat_seconds: float = _setting(15.0, "Seconds between `: keepalive` SSE comments.")
    worker_concurrency: int = _setting(4096, "Responses one process generates at once.")
    lease_seconds: float = _setting(30.0, "Job lease; renewed every third of it.")
    sweep_seconds: float = _setting(5.0, "How often expired or orphaned jobs are swept.")
    job_attempts: int = _setting(
        3, "Claims a job gets: a job whose worker died is handed on until this many."
    )
    shutdown_grace_seconds: float = _setting(
        10.0, "On SIGTERM, how long running jobs may finish before they are handed back."
    )
    store_outage_seconds: float = _setting(
        30.0,
        "How long Tether rides out an unreachable store (a restart of PostgreSQL or Redis): "
        "runners retry their appends and streams wait with keepalives; past it, they fail "
        "with a storage error.",
    )
    max_body_bytes: int = _setting(
        32 * 1024 * 1024, "Largest request body accepted (413 beyond it)."
    )
    max_input_items: int = _setting(
        10_000, "Most input items one response may have, context included (400 beyond)."
    )
    max_queued_jobs: int = _setting(
        10_000, "Background responses that may wait for a worker; beyond, 429 (0: no limit)."
    )
    max_generation_seconds: float = _setting(
        3600.0, "Longest a response may generate before it fails (0: no limit)."
    )
    websocket_max_seconds: float = _setting(
        3600.0,
        "Longest a WebSocket connection to /v1/responses stays open; then it gets the "
        "error websocket_connection_limit_reached and is closed (0: no limit).",
    )
    idempotency_seconds: float = _setting(
        86400.0, "How long an Idempotency-Key keeps answering with its response (24 h)."
    )
    retention_responses_seconds: float = _setting(
        30 * 86400.0,
        "How long a finished response (its snapshot, events and input items) is kept; "
        "the sweeper deletes it after this (30 days). Conversation items are kept.",
    )
    retention_event_logs_seconds: float = _setting(
        0.0,
        "How long a finished response's event log (stream resume) is kept; after it, "
        "resuming answers 400 stream_expired (0: as long as the response).",
    )
    api_keys: str = _setting(
        "",
        "Static API keys: 'project=key,project2=key2' (keys of 16+ characters), besides the "
        "keys `tether keys create` stores.",
    )
    admin_key: str = _setting(
        "", "The key that manages API keys over HTTP (/admin/keys); 16+ characters."
    )
    insecure_no_auth: bool = _setting(
        False, "Serve a non-loopback address with no API keys (anyone reaching it may use it)."
    )
    key_cache_seconds: float = _setting(
        10.0, "How long a process trusts a key lookup: a revoked key stops within this."
    )
    max_in_flight_per_key: int = _setting(
        0, "Responses one key may have generating at once, per process (0: no limit)."
    )
    requests_per_minute_per_key: int = _setting(
        0, "Requests one key may make per minute, per process (0: no limit)."
    )
    sqlite_synchronous: str = _setting(
        "NORMAL", "SQLite synchronous: NORMAL survives process crashes, FULL power loss too."
    )
    log_level: str = _setting("info", "Log level: debug, info, warning, error.")
    models: tuple[ModelConfig, ...] = _setting(DEFAULT_MODELS, "Models from [[models]].")

    @staticmethod
    def env_name(name: str) -> str:
        return f"TETHER_{name.upper()}"

    @classmethod
    def load(
        cls, environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Defaults ← config file ← environment ← overrides (flags; None means unset)."""
        flags = {k: v for k, v in (overrides or {}).items() if v is not None}
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "models":
                continue
            raw = environ.get(cls.env_name(f.name))
            if raw is not None:
                values[f.name] = _convert(f.name, f.type, raw)
        values.update(flags)
        config_path = values.get("config")
        settings = cls()
        if config_path:
            server, models = read_config_file(Path(config_path))
            settings = replace(settings, **server)
            if models:
                settings = replace(settings, models=models)
        return replace(settings, **values)


def read_config_file(path: Path) -> tuple[dict[str, Any], tuple[ModelConfig, ...]]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from exc
    unknown = set(data) - {"server", "models"}
    if unknown:
        raise ConfigError(
            f"Config file {path}: unknown tables {sorted(unknown)}; use [server], [[models]]"
        )
    known = {f.name for f in fields(Settings)} - {"models", "config"}
    server = dict(data.get("server", {}))
    for key in server:
        if key not in known:
            raise ConfigError(f"Config file {path}: unknown [server] setting {key!r}")
    models = []
    for entry in data.get("models", []):
        entry = dict(entry)
        name, provider = entry.pop("name", None), entry.pop("provider", None)
        if not isinstance(name, str) or not isinstance(provider, str):
            raise ConfigError(
                f"Config file {path}: every [[models]] needs a 'name' and a 'provider'"
            )
        limits = {}
        for key in ("context_window", "max_output_tokens"):
            value = entry.pop(key, None)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value <= 0
            ):
                raise ConfigError(
                    f"Config file {path}: model {name!r}: {key!r} must be a positive "
                    "number of tokens"
                )
            limits[key] = value
        models.append(ModelConfig(name, provider, entry, **limits))
    return server, tuple(models)


def _convert(name: str, kind: Any, raw: str) -> Any:
    kind = str(kind)
    try:
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes", "on")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{Settings.env_name(name)}={raw!r} is not a valid {kind}") from None
    return raw
