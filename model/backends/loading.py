"""Find a model's files (local directory or Hugging Face hub id) and explain clearly when that fails.

Hub downloads go through `huggingface_hub.snapshot_download` with a progress class that reports `LoadEvent`s instead
of printing, so the TUI can show them; the model is then loaded from the local snapshot directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from model.backends.base import LoadEvent, ProgressCallback
from model.backends.errors import ModelNotFoundError

# What a transformers checkpoint directory needs; tokenizer files are checked by `missing_files`.
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model.safetensors.index.json")
ALLOW_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "original/tokenizer.model", "*.md"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_TINY_FIX = "for offline smoke tests use `tiny:llama-3.1-instruct` or build one with `assistant dev tiny-models DIR`"


def is_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and not Path(source).expanduser().exists()


def offline_mode() -> bool:
    return any(
        os.environ.get(name, "").upper() in {"1", "ON", "YES", "TRUE"}
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def missing_files(directory: Path) -> list[str]:
    """What a Hugging Face causal-LM directory lacks (empty when complete)."""
    missing: list[str] = []
    if not (directory / "config.json").is_file():
        missing.append("config.json")
    if not any(any(directory.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        missing.append("model weights (*.safetensors or pytorch_model*.bin)")
    if not ((directory / "tokenizer.json").is_file() or (directory / "tokenizer.model").is_file()):
        missing.append("tokenizer (tokenizer.json)")
    return missing


def check_local_dir(directory: Path) -> Path:
    """Return the directory when it holds a loadable checkpoint, else raise ModelNotFoundError saying what is wrong."""
    looked_for = f"local model directory {directory}"
    if not directory.exists():
        raise ModelNotFoundError(
            looked_for,
            "the directory does not exist",
            f"check the path, or name a Hugging Face hub id such as meta-llama/Llama-3.1-8B-Instruct; {_TINY_FIX}",
        )
    if not directory.is_dir():
        raise ModelNotFoundError(looked_for, "it is a file, not a directory", "pass the checkpoint's directory")
    missing = missing_files(directory)
    if missing:
        why = f"the directory lacks {', '.join(missing)}"
        if (directory / "original" / "consolidated.00.pth").is_file() or (directory / "consolidated.00.pth").is_file():
            why += " (it looks like Meta's original checkpoint format, not Hugging Face format)"
        raise ModelNotFoundError(
            looked_for,
            why,
            "download the complete Hugging Face checkpoint, e.g. `hf download meta-llama/Llama-3.1-8B-Instruct "
            f"--local-dir {directory}` (accept the license on huggingface.co and set HF_TOKEN first)",
        )
    return directory


def resolve_model_source(
    source: str,
    *,
    on_progress: ProgressCallback | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> Path:
    """Local directory for `source`: the path itself, a built tiny model (`tiny:NAME`), or a hub snapshot."""
    emit = on_progress or (lambda event: None)
    emit(LoadEvent("resolve", f"looking for {source}"))
    if source.startswith("tiny:"):
        from model.tiny import ensure_tiny_model  # lazy: model.tiny imports model.backends, this package

        name = source.removeprefix("tiny:")
        try:
            return ensure_tiny_model(name)
        except ValueError as exc:
            raise ModelNotFoundError(f"tiny model {name!r}", str(exc), "use one of the names listed") from exc
    if not is_hub_id(source):
        return check_local_dir(Path(source).expanduser())
    directory = download_snapshot(source, emit=emit, token=token, endpoint=endpoint)
    return check_local_dir(directory)


def download_snapshot(repo_id: str, *, emit: ProgressCallback, token: str | None, endpoint: str | None) -> Path:
    """Fetch (or find in the cache) the files of `repo_id`, mapping every failure to one clear ModelNotFoundError."""
    from huggingface_hub import snapshot_download

    token = token or os.environ.get("HF_TOKEN") or None
    offline = offline_mode()
    try:
        path = snapshot_download(
            repo_id,
            allow_patterns=ALLOW_PATTERNS,
            token=token,
            endpoint=endpoint,
            local_files_only=offline,
            tqdm_class=_progress_class(emit),
        )
    except Exception as exc:
        raise explain_hub_error(repo_id, exc, offline=offline, has_token=token is not None) from exc
    emit(LoadEvent("download", f"{repo_id} is available locally", 1.0))
    return Path(path)


def explain_hub_error(repo_id: str, exc: BaseException, *, offline: bool, has_token: bool) -> ModelNotFoundError:
    """Turn a huggingface_hub / network exception (anywhere in the chain) into what, why and how to fix."""
    from huggingface_hub import errors as hub_errors

    looked_for = f"Hugging Face hub model {repo_id}"
    page = f"https://huggingface.co/{repo_id}"
    chain = list(_exception_chain(exc))
    if any(isinstance(e, hub_errors.GatedRepoError) for e in chain):
        if has_token:
            return ModelNotFoundError(
                looked_for,
                "the repository is gated and the token in HF_TOKEN has no access to it",
                f"accept the license at {page} with the account that owns the token, then retry",
            )
        return ModelNotFoundError(
            looked_for,
            "the repository is gated and no Hugging Face token was given (HF_TOKEN is not set)",
            f"accept the license at {page}, create a read token at https://huggingface.co/settings/tokens "
            "and export HF_TOKEN=<token>",
        )
    if any(isinstance(e, hub_errors.RepositoryNotFoundError) for e in chain):
        return ModelNotFoundError(
            looked_for,
            "no such repository on the Hub (or it is private and the token cannot see it)",
            f"check the spelling of {repo_id!r}, or pass a local directory; {_TINY_FIX}",
        )
    if offline or any(type(e).__name__ == "OfflineModeIsEnabled" for e in chain):
        return ModelNotFoundError(
            looked_for,
            "offline mode is on (HF_HUB_OFFLINE=1) and the model is not in the local Hugging Face cache",
            f"download it once with network access (`hf download {repo_id}`), or pass a local directory; {_TINY_FIX}",
        )
    if any(_is_network_error(e) for e in chain):
        return ModelNotFoundError(
            looked_for,
            f"the Hub could not be reached (no network?): {_first_line(chain[-1])}",
            f"check the network or proxy settings, or download the model elsewhere (`hf download {repo_id} "
            f"--local-dir DIR`) and pass DIR; {_TINY_FIX}",
        )
    if any(isinstance(e, hub_errors.EntryNotFoundError | hub_errors.LocalEntryNotFoundError) for e in chain):
        return ModelNotFoundError(
            looked_for,
            f"required files are missing: {_first_line(exc)}",
            "check that the repository is a transformers checkpoint, or pass a complete local directory",
        )
    return ModelNotFoundError(looked_for, f"{type(exc).__name__}: {_first_line(exc)}", "see the error above")


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_network_error(exc: BaseException) -> bool:
    name = type(exc).__name__
    return isinstance(exc, ConnectionError | TimeoutError) or name in {
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "NetworkError",
        "gaierror",
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _progress_class(emit: ProgressCallback) -> type:
    """A tqdm stand-in that forwards progress to `emit` and prints nothing."""
    from tqdm.auto import tqdm

    class _EventProgress(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._done = 0.0

        def update(self, n: float | None = 1) -> bool | None:
            self._done += n or 0
            total = self.total or 0
            fraction = min(self._done / total, 1.0) if total else None
            emit(LoadEvent("download", str(self.desc or "downloading"), fraction))
            return None

    return _EventProgress
