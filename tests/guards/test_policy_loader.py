"""Loading policy files: every kind of problem names the file, the line and the key path."""

from pathlib import Path

import pytest

from guards.policy import PolicyError, PolicyIssue, check_policy_text, load_policy, parse_policy_text


def issues_of(text: str) -> list[PolicyIssue]:
    with pytest.raises(PolicyError) as caught:
        parse_policy_text(text, file="p.yaml")
    return caught.value.errors


def only_issue(text: str) -> PolicyIssue:
    issues = issues_of(text)
    assert len(issues) == 1, issues
    return issues[0]


# (policy text, line, key path, a phrase of the problem)
CASES = [
    ("version: 1\nmodels:\n  main:\n    sorce: x\n", 4, "models.main.sorce", "did you mean `source`"),
    ("version: 1\nsurprise: 1\n", 2, "surprise", "unknown key"),
    ("version: 1\nllama_guard:\n  threshold: high\n", 3, "llama_guard.threshold", "valid number"),
    ("version: 1\nllama_guard:\n  threshold: 1.5\n", 3, "llama_guard.threshold", "less than or equal to 1"),
    ("version: 1\nllama_guard:\n  action: blok\n", 3, "llama_guard.action", "'block', 'warn', 'log' or 'ask'"),
    ("version: 1\nllama_guard:\n  on_error: warn\n", 3, "llama_guard.on_error", "'block' or 'allow'"),
    (
        "version: 1\nllama_guard:\n  categories:\n    - S1\n    - S15\n",
        5,
        "llama_guard.categories[1]",
        "unknown category S15",
    ),
    ("version: 1\nllama_guard:\n  excluded: [S1, X9]\n", 3, "llama_guard.excluded[1]", "category code such as S1"),
    (
        "version: 1\nmodels: {llama_guard: {variant: 1b}}\nllama_guard:\n  excluded: [S14]\n",
        4,
        "llama_guard.excluded[0]",
        "S14 exists only in the 8B model",
    ),
    (
        "version: 1\nllama_guard:\n  excluded: [S7]\n  custom:\n"
        "    - code: S7\n      name: Privacy\n      description: d\n",
        5,
        "llama_guard.custom[0].code",
        "both excluded and customised",
    ),
    (
        "version: 1\nllama_guard:\n  custom:\n    - {code: S16, name: n, description: d}\n",
        4,
        "llama_guard.custom[0].code",
        "missing S15",
    ),
    (
        "version: 1\nmodels: {llama_guard: {variant: 1b}}\nllama_guard:\n  custom:\n"
        "    - {code: S14, name: a, description: d}\n    - {code: S14, name: b, description: d}\n",
        6,
        "llama_guard.custom[1].code",
        "defined twice",
    ),
    (
        "version: 1\nllama_guard:\n  categories: [S1]\n  custom:\n    - {code: S2, name: a, description: d}\n",
        5,
        "llama_guard.custom[0].code",
        "not enabled in categories",
    ),
    (
        "version: 1\nllama_guard:\n  custom:\n    - {code: S15, name: a}\n",
        4,
        "llama_guard.custom[0].description",
        "missing",
    ),
    (
        "version: 1\nllama_guard:\n  custom:\n    - {code: S15, name: a, description: '<|eot_id|>'}\n",
        4,
        "llama_guard.custom[0]",
        "break the guard prompt",
    ),
    (
        "version: 1\nllama_guard:\n  category_actions:\n    S1: warn\n    S99: block\n",
        5,
        "llama_guard.category_actions.S99",
        "unknown category S99",
    ),
    (
        "version: 1\nllama_guard:\n  categories: [S1, S2]\n  excluded: [S2]\n",
        4,
        "llama_guard.excluded[0]",
        "both enabled in categories and excluded",
    ),
    (
        "version: 1\nllama_guard:\n  categories: [S1]\n  excluded: [S1]\n",
        4,
        "llama_guard.excluded[0]",
        "both enabled in categories and excluded",
    ),
    (
        "version: 1\nstages:\n  code:\n    code_shield: {enabled: yes please}\n",
        4,
        "stages.code.code_shield.enabled",
        "boolean",
    ),
    (
        "version: 1\nstages:\n  user_input:\n    prompt_guard: {score: evil}\n",
        4,
        "stages.user_input.prompt_guard.score",
        "jailbreak",
    ),
    ("version: 1\nstages:\n  planning: {}\n", 3, "stages.planning", "allowed here: user_input"),
    ("version: 1\nprompt_guard:\n  window_tokens: 1024\n", 3, "prompt_guard.window_tokens", "512"),
    ("version: 1\nprompt_guard:\n  stride_tokens: 512\n", 2, "prompt_guard", "must be smaller than window_tokens"),
    ("version: 1\ncode_shield:\n  languages: [python, cobol]\n", 3, "code_shield.languages[1]", "'python'"),
    ("version: 1\ncode_shield:\n  actions: {warn: deny}\n", 3, "code_shield.actions.warn", "'allow'"),
    ("version: 1\naudit:\n  texts: encrypted\n", 3, "audit.texts", "'full', 'hash' or 'redact'"),
    ("version: 1\ntools:\n  deny: [shell, 'rm -rf']\n", 3, "tools.deny[1]", "tool name"),
    ("version: 1\ntools:\n  custom: [notamodule]\n", 3, "tools.custom[0]", "package.module:function"),
    (
        "version: 1\ntools:\n  arguments:\n    t:\n      a: {pattern: '(['}\n",
        5,
        "tools.arguments.t.a.pattern",
        "regular expression",
    ),
    (
        "version: 1\ntools:\n  arguments:\n    t:\n      a: {schema: {type: 12}}\n",
        5,
        "tools.arguments.t.a.schema",
        "JSON schema",
    ),
    ("version: 1\ntools:\n  arguments:\n    t:\n      a: {}\n", 5, "tools.arguments.t.a", "exactly one of"),
    ("version: 1\ntools:\n  max_calls_per_turn: 0\n", 3, "tools.max_calls_per_turn", "greater than 0"),
    ("version: 1\ntools:\n  sandbox: {isolation: none}\n", 3, "tools.sandbox.isolation", "best_effort"),
    ("version: 1\nmodels:\n  main: {backend: openai}\n", 3, "models.main", "needs base_url"),
    ("version: 1\nmodels:\n  main: {device: gpu}\n", 3, "models.main.device", "cuda:N"),
    ("version: 1\nagent:\n  dialect: chatml\n", 3, "agent.dialect", "'meta' or 'hf'"),
    ("version: 1\nrefusals:\n  user_input: ''\n", 3, "refusals.user_input", "at least 1 character"),
    ("version: 1\nagent:\n  max_steps: 3\n  max_steps: 4\n", 4, "agent.max_steps", "duplicate key (first at line 3)"),
    ("version: 1\nstages:\n  user_input:\n    on: true\n", 4, "stages.user_input.on", "a key must be text"),
    ("models: {}\n", 1, "version", "version: 1"),
    ("version: 1\nmodels:\n", 2, "models", "valid dictionary"),
]


@pytest.mark.parametrize("text, line, key_path, phrase", CASES, ids=[c[2] + ":" + c[3][:20] for c in CASES])
def test_each_problem_names_its_line_and_key(text: str, line: int, key_path: str, phrase: str) -> None:
    issue = only_issue(text)
    assert (issue.file, issue.line, issue.key_path) == ("p.yaml", line, key_path), issue
    assert phrase in issue.problem
    assert str(issue) == f"p.yaml:{line}: {key_path}: {issue.problem}"


def test_all_problems_are_reported_at_once_in_line_order() -> None:
    issues = issues_of("version: 1\nagent:\n  max_steps: 0\n  dialect: x\nllama_guard:\n  action: nope\n")
    assert [(i.line, i.key_path) for i in issues] == [
        (3, "agent.max_steps"),
        (4, "agent.dialect"),
        (6, "llama_guard.action"),
    ]


def test_error_message_is_one_line_per_issue() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy_text("version: 1\nx: 1\ny: 2\n", file="f.yaml")
    lines = str(caught.value).splitlines()
    assert [line.split(": ")[0:2] for line in lines] == [["f.yaml:2", "x"], ["f.yaml:3", "y"]]


@pytest.mark.parametrize(
    "text, line, phrase",
    [
        ("version: 1\nllama_guard: [unclosed\n", 2, "invalid YAML"),  # the line of the unclosed `[`
        ("version: 1\n  bad indent: 2\n", 2, "invalid YAML"),
        ("", 1, "empty"),
        ("# only a comment\n", 1, "empty"),
        ("- version: 1\n", 1, "not a list"),
        ("just text\n", 1, "not a single value"),
        ("version: 1\n---\nversion: 1\n", 2, "invalid YAML"),
    ],
)
def test_files_that_are_not_a_policy_mapping(text: str, line: int, phrase: str) -> None:
    issue = only_issue(text)
    assert issue.line == line and issue.key_path == ""
    assert phrase in issue.problem
    assert str(issue).startswith(f"p.yaml:{line}: ")


@pytest.mark.parametrize("kind", ["missing", "directory", "binary"])
def test_unreadable_files(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "p.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"version: 1\n\xff\xfe\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.unreadable
    (issue,) = caught.value.errors
    assert issue.file == str(path) and issue.line is None
    assert str(issue).startswith(f"{path}: ")


def test_yaml_errors_are_not_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: [\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert not caught.value.unreadable


def test_load_policy_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nagent:\n  max_steps: 3\n")
    assert load_policy(path).agent.max_steps == 3
    assert load_policy(str(path)).agent.max_steps == 3


def test_warnings_point_at_their_lines() -> None:
    checked = check_policy_text("version: 1\nllama_guard:\n  threshold: 0.5\n  on_error: allow\n", file="w.yaml")
    (warning,) = checked.warnings
    assert (warning.file, warning.line, warning.key_path) == ("w.yaml", 4, "llama_guard.on_error")
    assert "fail-open" in warning.problem


def test_merge_keys_and_anchors_work() -> None:
    policy = parse_policy_text(
        "version: 1\nstages:\n  user_input:\n    prompt_guard: &pg {threshold: 0.3, score: injection}\n"
        "  tool_result:\n    prompt_guard: *pg\n"
    )
    assert policy.stages.tool_result.prompt_guard.threshold == 0.3


def test_a_policy_file_over_1_mib_is_refused_at_once(tmp_path: Path) -> None:
    import time

    from guards.policy.loader import MAX_POLICY_BYTES

    path = tmp_path / "big.yaml"
    # 50 MB of valid YAML took 51 s to accept; now it is refused before parsing.
    path.write_text("version: 1\n" + "# padding\n" * (5 * 1024 * 1024))
    started = time.perf_counter()
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert time.perf_counter() - started < 2.0
    (issue,) = caught.value.errors
    assert caught.value.unreadable and issue.line is None
    assert "over the 1,048,576-byte (1 MiB) limit" in str(issue) and str(issue).startswith(f"{path}: ")
    with pytest.raises(PolicyError, match="limit"):
        parse_policy_text("version: 1\n" + "#" * MAX_POLICY_BYTES)
    # Just under the limit still loads.
    path.write_text("version: 1\n" + "#" * (MAX_POLICY_BYTES - 20) + "\n")
    assert load_policy(path).version == 1
