"""Before loading anything heavy: is every model the policy names actually here? Fast, no torch, no network.

A hub id counts as present only when its snapshot is in the Hugging Face cache: the chat never starts a multi-GB
download on its own; the fix tells the user the command that does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from assistant.home import config_dir
from assistant.tui.session import COMPONENT_LABELS, Component, SetupProblem
from assistant.warmup import MAIN_MODEL
from guards.policy import Policy
from guards.policy.registry import MODEL_GUARDS
from guards.runtime.registry import enabled_anywhere
from model.backends.loading import missing_files

_LICENSES = {
    "meta-llama/": "accept the model's license on https://huggingface.co/{repo} and run `{hf} auth login` first",
}


def command_path(name: str) -> str:
    """How the user can run console script `name`: its bare name when it is on PATH, else its full path (a venv's
    bin/ that is not activated), so the start screen never names a command the user's shell cannot find."""
    import shutil
    import sys

    if shutil.which(name):
        return name
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else name


@dataclass(frozen=True)
class MissingModel:
    component: Component
    source: str
    why: str
    fix: str


def used_guards(policy: Policy) -> set[Component]:
    """The guards with a model that some stage of the policy enables (a guard no stage uses is never loaded)."""
    return {name for name in MODEL_GUARDS if enabled_anywhere(policy, name)}


def check_source(component: Component, source: str) -> MissingModel | None:
    """None when the source can be loaded without a download; else what is missing and how to get it."""
    if source.startswith("tiny:"):
        return None  # built on first use
    path = Path(source).expanduser()
    if path.exists() or source.startswith((".", "/", "~")):

        if not path.is_dir():
            return MissingModel(component, source, "the directory does not exist", "check the path in the policy")
        lacks = missing_files(path)
        if lacks:
            return MissingModel(component, source, f"the directory lacks {', '.join(lacks)}", _download_fix(source))
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json")
    if isinstance(cached, str):

        lacks = missing_files(Path(cached).parent)
        if not lacks:
            return None
        why = f"the cached download is incomplete ({', '.join(lacks)})"
        return MissingModel(component, source, why, _download_fix(source))
    why = "it is not downloaded (not in the Hugging Face cache)"
    return MissingModel(component, source, why, _download_fix(source))


def _download_fix(repo: str) -> str:
    hf = command_path("hf")
    step = f"{hf} download {repo}"
    for prefix, note in _LICENSES.items():
        if repo.startswith(prefix):
            return f"{note.format(repo=repo, hf=hf)}, then: {step}"
    return step


def check_models(policy: Policy, model_override: str | None = None) -> list[MissingModel]:
    """Every model the policy (or `--model`) needs that is not available locally."""
    missing: list[MissingModel] = []
    if model_override:
        kind, _, rest = model_override.partition(":")
        if kind == "scripted" and not Path(rest).expanduser().is_file():
            missing.append(MissingModel(MAIN_MODEL, model_override, "the scripted file does not exist", "fix --model"))
        elif kind in ("transformers", "tiny"):
            problem = check_source(MAIN_MODEL, rest if kind == "transformers" else model_override)
            if problem is not None:
                missing.append(problem)
    elif policy.models.main.backend == "transformers" and (
        problem := check_source(MAIN_MODEL, policy.models.main.source)
    ):
        missing.append(problem)
    for guard in sorted(used_guards(policy)):
        if getattr(getattr(policy.models, guard), "backend", "transformers") == "openai":
            continue  # served remotely (models.llama_guard.base_url): nothing to find on this machine
        if problem := check_source(guard, getattr(policy.models, guard).source):
            missing.append(problem)
    return missing


def missing_models_problem(missing: list[MissingModel], policy_file: str, *, builtin: bool = False) -> SetupProblem:
    """What the start screen says: which models are missing, why, and the commands that get them."""
    names = ", ".join(dict.fromkeys(COMPONENT_LABELS[m.component] for m in missing))
    message = "\n".join(f"• {COMPONENT_LABELS[m.component]}: {m.source} - {m.why}." for m in missing)
    fix = "\n".join(f"• {m.fix}" for m in missing)
    if builtin:

        assistant = command_path("assistant")
        fix += (
            f"\n• or use models you have: `{assistant} policy init {config_dir() / 'policy.yaml'}`, edit its `models:` "
            f"section (hub ids, local directories or tiny:NAME), and `{assistant} chat` picks it up."
        )
    else:
        fix += f"\n• or point `models:` in {policy_file} at models you have, or pass `--model SPEC`."
    which = "the built-in default policy" if builtin else f"the policy {policy_file}"
    title = f"Missing model{'s' if len(missing) > 1 else ''}: {names}"
    return SetupProblem(title=title, message=f"{which[0].upper()}{which[1:]} needs:\n{message}", fix=fix)
