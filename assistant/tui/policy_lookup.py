"""Which policy `assistant chat` uses: `--policy FILE`, else `<config dir>/policy.yaml`, else the built-in starter
policy (the one `assistant policy init` writes, naming the real Llama models)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import assistant
from assistant.home import config_dir
from guards.policy.templates import OFFLINE_SMOKE, UnknownTemplateError, template_path

USER_POLICY_FILE = "policy.yaml"
OFFLINE_POLICY = Path("examples") / "policies" / "offline-smoke.yaml"


@dataclass(frozen=True)
class PolicyChoice:
    path: Path
    origin: str  # "--policy", "config", "built-in"


def builtin_policy_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("guards.policy").joinpath("starter.yaml")))


def choose_policy(explicit: Path | None) -> PolicyChoice:
    if explicit is not None:
        return PolicyChoice(explicit, "--policy")

    user = config_dir() / USER_POLICY_FILE
    if user.is_file():
        return PolicyChoice(user, "config")
    return PolicyChoice(builtin_policy_path(), "built-in")


def offline_policy_path() -> Path | None:
    """The offline smoke policy: a source checkout's `examples/policies/offline-smoke.yaml` when run from one (what
    `make chat` shows), else the copy the package ships (`assistant policy init --template offline-smoke`); None only
    when neither is there (a broken install)."""

    candidates = [Path.cwd() / OFFLINE_POLICY, Path(assistant.__file__).resolve().parents[1] / OFFLINE_POLICY]
    with contextlib.suppress(UnknownTemplateError):
        candidates.append(template_path(OFFLINE_SMOKE))
    return next((path for path in candidates if path.is_file()), None)


def offline_hint(offline: Path | None) -> str:
    if offline is None:
        return (
            "The offline smoke policy (tiny random models, no downloads) is missing from this installation; "
            f"a source checkout has it as {OFFLINE_POLICY}: run `assistant chat --policy {OFFLINE_POLICY}` there."
        )
    return (
        "The offline smoke policy runs tiny random-weight models built on first use (no downloads, CPU only). "
        "The guards and tools are real; the answers are nonsense.\n"
        f"Press the button below, or start with: assistant chat --policy {offline}"
    )
