"""`ScriptedProvider`: a `ModelProvider` that plays a fixed script.

It yields the given text deltas, then `Usage` and `Finish`, and can stop at a
given delta to fail (raise a `ProviderError`) or to hold until the test releases
it — what runner and worker tests need to put a response in a known state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from tether.errors import ProviderError
from tether.providers.base import Delta, Finish, FinishReason, GenerationRequest, TextDelta, Usage

DEFAULT_USAGE = Usage(input_tokens=3, output_tokens=3)


class ScriptedProvider:
    """Plays `texts` as deltas, then `usage` and `Finish(finish)` (each skipped if None).

    - `fail_at=i` raises `error` instead of yielding `texts[i]` (`len(texts)`: after all);
    - `hold_at=i` sets `reached` before `texts[i]` and waits for `release`;
    - `cooperative=False` never awaits between deltas (a provider that floods the runner).
    """

    def __init__(
        self,
        texts: Sequence[str] = ("Hel", "lo", " world"),
        *,
        usage: Usage | None = DEFAULT_USAGE,
        finish: FinishReason | None = "stop",
        fail_at: int | None = None,
        error: Exception | None = None,
        hold_at: int | None = None,
        cooperative: bool = True,
    ) -> None:
        self.texts = list(texts)
        self.usage = usage
        self.finish = finish
        self.fail_at = fail_at
        self.error: Exception = error or ProviderError("upstream went away", code="server_error")
        self.hold_at = hold_at
        self.cooperative = cooperative
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.requests: list[GenerationRequest] = []
        self.open_streams = 0  # streams started and not yet finished or closed
        self.closed = False

    def __repr__(self) -> str:
        return (
            f"<ScriptedProvider texts={len(self.texts)} fail_at={self.fail_at} "
            f"hold_at={self.hold_at} runs={len(self.requests)} open={self.open_streams}>"
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        self.open_streams += 1
        try:
            async for delta in self._play():
                yield delta
        finally:
            self.open_streams -= 1

    async def _play(self) -> AsyncIterator[Delta]:
        for index in range(len(self.texts) + 1):
            if index == self.hold_at:
                self.reached.set()
                await self.release.wait()
            if index == self.fail_at:
                raise self.error
            if index == len(self.texts):
                break
            if self.cooperative:
                await asyncio.sleep(0)
            yield TextDelta(self.texts[index])
        if self.usage is not None:
            yield self.usage
        if self.finish is not None:
            yield Finish(self.finish)

    async def aclose(self) -> None:
        self.closed = True
