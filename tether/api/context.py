"""What the routes share: settings, the stores, the models and the worker."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from tether.jobs.worker import Worker
from tether.providers.registry import ProviderRegistry
from tether.settings import Settings
from tether.storage.base import Storage


@dataclass(frozen=True)
class Context:
    settings: Settings
    storage: Storage  # stored responses (store=true)
    memory: Storage  # store=false responses, in memory only
    providers: ProviderRegistry
    worker: Worker


def context(request: Request) -> Context:
    ctx: Context = request.app.state.tether
    return ctx
