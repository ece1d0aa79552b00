"""Tools the model may call: built-ins (code interpreter, Brave Search, Wolfram|Alpha), typed custom functions,
the policy's tool rules, and the sandbox for model-written code."""

import logging

from tools.base import Tool, ToolArgumentError, ToolOutput
from tools.custom import FunctionTool, ToolLoadError, load_custom, tool
from tools.executor import Approver, Execution, Ran, Review, ToolPath
from tools.registry import ToolRegistry, build_registry
from tools.rules import RuleDecision, TurnState, check_call

logging.getLogger(__name__).addHandler(logging.NullHandler())  # silent unless the application configures logging

__all__ = [
    "Approver",
    "Execution",
    "FunctionTool",
    "Ran",
    "Review",
    "RuleDecision",
    "Tool",
    "ToolArgumentError",
    "ToolLoadError",
    "ToolOutput",
    "ToolPath",
    "ToolRegistry",
    "TurnState",
    "build_registry",
    "check_call",
    "load_custom",
    "tool",
]
