"""Whatever text a policy file holds, loading it either succeeds or raises PolicyError with located issues."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guards.policy import PolicyError, parse_policy_text

_KEYS = ["version", "models", "main", "llama_guard", "categories", "excluded", "custom", "code", "stages",
         "user_input", "prompt_guard", "enabled", "threshold", "tools", "deny", "arguments", "pattern"]
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 600), st.floats(-1, 2, allow_nan=False),
    st.sampled_from(["S1", "S14", "S99", "block", "allow", "tiny:llama", "(", "x y"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)),
    max_leaves=12,
)


def _load(text: str) -> None:
    try:
        parse_policy_text(text, file="fuzz.yaml")
    except PolicyError as exc:
        assert exc.errors
        for issue in exc.errors:
            assert issue.file == "fuzz.yaml"
            assert issue.line is not None and 1 <= issue.line <= text.count("\n") + 2
            assert str(issue).startswith(f"fuzz.yaml:{issue.line}: ")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=5))
def test_structured_nonsense_gives_located_issues(data: dict) -> None:
    import yaml

    _load("version: 1\n" + yaml.safe_dump(data, sort_keys=False) if data else "version: 1\n")


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}\"'#&*!|>\n\t 1S.%@`<,?")), max_size=60))
def test_arbitrary_text_never_crashes_the_loader(text: str) -> None:
    _load(text)
