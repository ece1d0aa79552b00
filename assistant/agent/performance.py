"""The agent's performance switches (for the benchmark's comparisons, and for deployments that want them off).

The other switches live where their work is done: `models.main` KV-cache reuse in the transformers backend
(`reuse_cache`), streaming moderation in the policy (`agent.streaming_moderation`), the one-forward Llama Guard with
its precomputed prefix in `guards.llama_guard.LlamaGuard` (`mode`, `use_prefix_cache`), concurrent guards in
`guards.pipeline.GuardPipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Performance:
    # Start the model while the input guards (or the tool-result guards) still run; its output is used only if they
    # pass. None: where the backend says a discarded generation is cheap and harmless (local models: not a scripted
    # file, whose lines it would consume, nor a paid remote API).
    speculative: bool | None = None

    def speculates(self, backend: Any) -> bool:
        if self.speculative is not None:
            return self.speculative
        return bool(getattr(backend, "speculation_ok", False))
