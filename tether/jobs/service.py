"""`tether worker`: a process that only generates — it claims jobs from the shared
store and runs them, with no HTTP server. Scale out by starting several (each with
`--concurrency N`) beside `tether serve --no-worker` API replicas.

SIGTERM or SIGINT stops claiming, lets running jobs finish for
`shutdown_grace_seconds`, then hands the rest back to the other workers.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from tether.jobs.worker import Worker
from tether.providers.registry import ProviderRegistry
from tether.settings import Settings
from tether.storage.registry import open_storage

logger = logging.getLogger("tether.worker")


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set or the process gets SIGTERM/SIGINT."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    providers = ProviderRegistry.from_models(settings.models)
    storage = await open_storage(settings.store, sqlite_synchronous=settings.sqlite_synchronous)
    worker = Worker([storage], providers, settings)
    try:
        await worker.start()
        logger.info("worker %s generating from %s", worker.owner, storage.name)
        await stop.wait()
        logger.info("stopping: %d running job(s)", worker.running)
    finally:
        await worker.stop(settings.shutdown_grace_seconds)
        await providers.aclose()
        await storage.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
