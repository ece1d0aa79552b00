"""`assistant serve` with the benchmark's teacher-forced tiny main model and its `fetch_page` tool.

    python bench/serve_forced.py SCENARIO.json --threads 1 -- --policy P.yaml --model forced:MODEL_DIR ...

The server is the real one (`assistant.cli.serve_cmd`: FastAPI, admission, trust store, agent, guard processes); this
launcher only registers one more main-model kind, `forced:MODEL_DIR` (bench/forced.py: the tiny random Llama fed
the scenario's completions, keyed by the last user message, so concurrent conversations each get their script),
and serves the scenario's pages to the policy's custom tool `bench.serve_forced:fetch_page`. SCENARIO.json holds
`{"turns": [[user, [completions...]], ...], "pages": {name: text}}` (written by bench/serve_load.py).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.custom import tool  # noqa: E402  (after the path is set)

SCENARIO_ENV = "BENCH_SERVE_SCENARIO"


@functools.cache
def _scenario() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(Path(os.environ[SCENARIO_ENV]).read_text(encoding="utf-8"))
    return loaded


@tool
def fetch_page(name: str) -> str:
    """Fetch a page of text by name.

    Args:
        name: which page
    """
    pages = _scenario()["pages"]
    assert isinstance(pages, dict)
    return str(pages.get(name, "no such page"))


def register_forced_backend() -> None:
    """`forced:MODEL_DIR` as a main-model spec of this process."""
    from bench.forced import ForcedBackend
    from model.backends import BACKENDS, BackendKind

    def build(rest: str, _spec: str, _progress: object) -> ForcedBackend:
        backend = ForcedBackend(rest, reuse_cache=True, context_window=16384)
        turns = _scenario()["turns"]
        assert isinstance(turns, list)
        backend.set_scenario([(user, completions) for user, completions in turns])
        return backend

    BACKENDS["forced"] = BackendKind(build)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    split = args.index("--") if "--" in args else len(args)
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per operation of the server process")
    ours = parser.parse_args(args[:split])
    os.environ[SCENARIO_ENV] = str(ours.scenario.resolve())
    import torch

    torch.set_num_threads(ours.threads)
    register_forced_backend()
    from assistant.cli.serve_cmd import serve

    return int(serve.main(args[split + 1 :], standalone_mode=False) or 0)


if __name__ == "__main__":
    sys.exit(main())
