"""The graph's node names, each with a Literal type of its own.

A node routes with `Command(goto=...)` and declares where it may go in its return annotation,
`-> Command[Literal[ToModel, ToEnd]]`: LangGraph reads that annotation to draw the node's edges (`build_graph`
refuses a node that declares none), and the type checker holds every `goto` to it.
"""

from __future__ import annotations

from typing import Final, Literal

ToInputGuard = Literal["input_guard"]
ToModel = Literal["model"]
ToReview = Literal["review_calls"]
ToApproval = Literal["approval"]
ToExecute = Literal["execute"]
ToEnd = Literal["__end__"]  # langgraph.graph.END, typed as the Literal it is

INPUT_GUARD: Final[ToInputGuard] = "input_guard"
MODEL: Final[ToModel] = "model"
REVIEW: Final[ToReview] = "review_calls"
APPROVAL: Final[ToApproval] = "approval"
EXECUTE: Final[ToExecute] = "execute"
END: Final[ToEnd] = "__end__"
