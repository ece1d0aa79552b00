"""`models`: which checkpoints run as the main model and the two guards, and where."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from guards.policy.base import Device, DType, Flag, NonEmptyStr, PolicyModel, PositiveInt, Seconds
from guards.policy.categories import LlamaGuardVariant

# `source` is a Hugging Face hub id, a local directory, or `tiny:NAME` (random-weight test models built by
# `assistant dev tiny-models`).


class MainModelConfig(PolicyModel):
    """The assistant's own model (Llama 3.1 Instruct by default; Llama 3.2/3.3 and Llama 4 too)."""

    source: NonEmptyStr = "meta-llama/Llama-3.1-8B-Instruct"
    # The prompt format and tokenizer: llama3 (Llama 3.1/3.2/3.3) | llama4. null: read from the checkpoint's
    # config.json, else llama3 (a remote server's family must be named here).
    family: Literal["llama3", "llama4"] | None = None
    backend: Literal["transformers", "openai"] = "transformers"
    base_url: NonEmptyStr | None = None  # the OpenAI-compatible server, for backend: openai
    api_key_env: NonEmptyStr | None = None  # name of the environment variable holding the server's key
    device: Device = "auto"
    dtype: DType = "auto"
    context_window: PositiveInt = 8192
    max_new_tokens: PositiveInt = 1024
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, strict=True)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0, strict=True)
    # Longest wait for the model's next text (the first token included) before the call is abandoned as a model
    # backend error: a hung server or generation thread must not hang the turn.
    timeout_s: Seconds = 300.0

    @model_validator(mode="after")
    def _openai_needs_url(self) -> MainModelConfig:
        if self.backend == "openai" and self.base_url is None:
            raise ValueError(
                "backend: openai needs base_url (the server's address, for example http://localhost:8000/v1)"
            )
        if self.max_new_tokens >= self.context_window:
            raise ValueError(
                f"max_new_tokens ({self.max_new_tokens}) must be smaller than context_window ({self.context_window})"
            )
        return self


# The architecture's contract names the main model's config `ModelConfig` (load_backend(spec: str | ModelConfig)).
ModelConfig = MainModelConfig


class LlamaGuardModelConfig(PolicyModel):
    """Llama Guard 3 8B (S1..S14) or 1B (S1..S13), or Llama Guard 4 12B (`variant: "4"`, S1..S14, Llama 4's
    tokenizer and chat format)."""

    source: NonEmptyStr = "meta-llama/Llama-Guard-3-8B"  # with backend: openai, the model name the server serves
    variant: LlamaGuardVariant = "8b"
    # `openai`: a remote OpenAI-compatible server (vLLM) scores the prompt (guards/llama_guard/remote.py).
    backend: Literal["transformers", "openai"] = "transformers"
    base_url: NonEmptyStr | None = None  # the server, for backend: openai (http://guard-host:8001/v1)
    api_key_env: NonEmptyStr | None = None  # name of the environment variable holding the server's key
    device: Device = "auto"
    dtype: DType = "auto"
    # `process: true` runs the guard in a child process of its own: its forward passes no longer hold this
    # process's interpreter lock, so the main model's decoding does not wait for them (docs/PERFORMANCE.md).
    process: Flag = False
    threads: PositiveInt | None = None  # torch threads in that process (null: torch's default); needs process

    @field_validator("variant", mode="before")
    @classmethod
    def _unquoted_four(cls, value: object) -> object:
        # YAML reads `variant: 4` as a number; it means Llama Guard 4 as surely as "4" does.
        return "4" if value == 4 and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _openai_needs_url(self) -> LlamaGuardModelConfig:
        if self.backend == "openai" and self.base_url is None:
            raise ValueError("backend: openai needs base_url (the Llama Guard server, e.g. http://localhost:8001/v1)")
        if self.backend == "openai" and self.process:
            raise ValueError("process: true runs a local model in a child process; backend: openai has no local model")
        _threads_need_process(self)
        return self


class PromptGuardModelConfig(PolicyModel):
    """Prompt Guard: v1 86M (BENIGN/INJECTION/JAILBREAK) or v2 86M/22M (benign/malicious); read from its config."""

    source: NonEmptyStr = "meta-llama/Prompt-Guard-86M"
    device: Device = "cpu"
    dtype: DType = "auto"
    # `process: true` runs the guard in a child process of its own: its forward passes no longer hold this
    # process's interpreter lock, so the main model's decoding does not wait for them (docs/PERFORMANCE.md).
    process: Flag = False
    threads: PositiveInt | None = None  # torch threads in that process (null: torch's default); needs process

    @model_validator(mode="after")
    def _check_threads(self) -> PromptGuardModelConfig:
        _threads_need_process(self)
        return self


def _threads_need_process(config: LlamaGuardModelConfig | PromptGuardModelConfig) -> None:
    if config.threads is not None and not config.process:
        raise ValueError("threads sets the torch threads of the guard's own process: it needs process: true")


class ModelsConfig(PolicyModel):
    main: MainModelConfig = MainModelConfig()
    llama_guard: LlamaGuardModelConfig = LlamaGuardModelConfig()
    prompt_guard: PromptGuardModelConfig = PromptGuardModelConfig()


__all__ = [
    "LlamaGuardModelConfig",
    "MainModelConfig",
    "ModelConfig",
    "ModelsConfig",
    "PromptGuardModelConfig",
]
