"""The sandbox for model-written code: namespaces via bubblewrap, resource limits, capped output."""

from tools.sandbox.isolation import IsolationUnavailableError, Mechanism, choose_mechanism
from tools.sandbox.limits import LIMIT_NAMES, SandboxLimits
from tools.sandbox.runner import SandboxResult, run_python

__all__ = [
    "LIMIT_NAMES",
    "IsolationUnavailableError",
    "Mechanism",
    "SandboxLimits",
    "SandboxResult",
    "choose_mechanism",
    "run_python",
]
