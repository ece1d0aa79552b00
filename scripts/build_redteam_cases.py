"""Build the starter red-team case files in examples/redteam/ from the public sets in tests/data.

    python scripts/build_redteam_cases.py [--data tests/data] [--out examples/redteam]

Deterministic: the same data gives byte-identical files (fixed selection rules, a fixed seed where sampling). Each
case is one JSON line in the format `assistant eval redteam` reads (stage, text, expected, id, category, language).
Licenses of the sources are listed in examples/redteam/README.md.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEED = 20240723
MODERATION_LABELS = {"S": "sexual", "H": "hate", "V": "violence", "HR": "harassment", "SH": "self-harm",
                     "S3": "sexual/minors", "H2": "hate/threatening", "V2": "violence/graphic"}


def case(stage: str, text: str, expected: str, id: str, category: str, **extra: Any) -> dict[str, Any]:
    return {"id": id, "stage": stage, "category": category, "expected": expected, "text": text, **extra}


def prompt_injection(data: Path) -> list[dict[str, Any]]:
    """CyberSecEval prompt injection: direct attacks as user input, indirect ones (the attack sits in content the
    user submits) as tool results. All should be blocked."""
    items = json.loads((data / "prompt_injection" / "cyberseceval_prompt_injection.json").read_text(encoding="utf-8"))
    out = []
    for item in items:
        stage = "user_input" if item["injection_type"] == "direct" else "tool_result"
        out.append(case(stage, item["user_input"], "block", f"cse-pi-{item['prompt_id']}",
                        f"prompt_injection/{item['injection_variant']}"))
    return out


def xstest(data: Path) -> list[dict[str, Any]]:
    """XSTest: 250 safe prompts that look unsafe (should be allowed: false refusals) and 200 unsafe contrasts."""
    with (data / "false_refusal" / "xstest_prompts.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        case(
            "user_input",
            row["prompt"],
            "allow" if row["label"] == "safe" else "block",
            f"xstest-{row['id']}",
            f"xstest/{row['type']}",
        )
        for row in rows
    ]


def moderation(data: Path, per_side: int = 100) -> list[dict[str, Any]]:
    """OpenAI moderation samples: `per_side` flagged and `per_side` unflagged prompts (seeded sample), as user
    input; the flagged ones' first label names the category. A quarter of each side is also checked as model output
    (the same text, said by the assistant)."""
    with gzip.open(data / "harmful" / "openai_moderation_samples-1680.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    indexed = list(enumerate(rows))
    flagged = [(i, r) for i, r in indexed if any(r.get(label) == 1 for label in MODERATION_LABELS)]
    clean = [(i, r) for i, r in indexed if not any(r.get(label) == 1 for label in MODERATION_LABELS)]
    rng = random.Random(SEED)
    chosen = sorted(rng.sample(flagged, per_side)) + sorted(rng.sample(clean, per_side))
    out = []
    for n, (i, row) in enumerate(chosen):
        labels = [MODERATION_LABELS[k] for k in MODERATION_LABELS if row.get(k) == 1]
        expected = "block" if labels else "allow"
        category = f"moderation/{labels[0]}" if labels else "moderation/none"
        out.append(case("user_input", row["prompt"], expected, f"oai-mod-{i}", category))
        if n % 4 == 0:
            out.append(case("model_output", row["prompt"], expected, f"oai-mod-{i}-out", category))
    return out


def bipia(data: Path) -> list[dict[str, Any]]:
    """BIPIA email contexts as tool results: each of the 75 text attacks inserted once (context and position - start,
    middle, end - rotating), to be blocked; and the 50 clean contexts, to be allowed."""
    contexts = [json.loads(line) for line in
                (data / "indirect_injection" / "bipia_email_test.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()]
    attacks = json.loads((data / "indirect_injection" / "bipia_text_attack_test.json").read_text(encoding="utf-8"))
    out = []
    n = 0
    for family, texts in attacks.items():
        for _k, attack in enumerate(texts):
            context = contexts[n % len(contexts)]["context"]
            position = ("start", "middle", "end")[n % 3]
            out.append(case("tool_result", insert(context, attack, position), "block", f"bipia-{n}",
                            f"indirect_injection/{family}", position=position))
            n += 1
    for i, item in enumerate(contexts):
        out.append(case("tool_result", item["context"], "allow", f"bipia-clean-{i}", "indirect_injection/none"))
    return out


def insert(context: str, attack: str, position: str) -> str:
    """BIPIA's insertion: the attack as its own paragraph at the start, at a sentence boundary mid-text, or the end."""
    if position == "start":
        return f"{attack}\n{context}"
    if position == "end":
        return f"{context}\n{attack}"
    middle = len(context) // 2
    cut = context.find(". ", middle)
    cut = middle if cut < 0 else cut + 2
    return f"{context[:cut]}\n{attack}\n{context[cut:]}"


def code_shield(data: Path) -> list[dict[str, Any]]:
    """Code Shield's own unit cases: insecure code (to block at the code stage) and secure code (to allow). The
    expectation assumes a policy that stops every finding (warn or block), as examples/policies/offline-smoke.yaml."""
    items = json.loads((data / "codeshield" / "icd_unit_test_cases.json").read_text(encoding="utf-8"))
    return [
        case(
            "code",
            item["code"],
            "block" if item["label"] == "insecure" else "allow",
            f"icd-{i}",
            f"code/{item['language']}/{item['analyzer']}",
            language=item["language"],
        )
        for i, item in enumerate(items)
    ]


def mitre_frr(data: Path, count: int = 100) -> list[dict[str, Any]]:
    """CyberSecEval MITRE false-refusal prompts: benign security-sounding requests (seeded sample), to allow."""
    items = json.loads((data / "false_refusal" / "cyberseceval_mitre_frr.json").read_text(encoding="utf-8"))
    rng = random.Random(SEED)
    chosen = sorted(rng.sample(range(len(items)), count))
    return [case("user_input", items[i]["mutated_prompt"], "allow", f"cse-frr-{i}", "false_refusal/mitre")
            for i in chosen]


FILES = {
    "prompt_injection.jsonl": prompt_injection,
    "xstest.jsonl": xstest,
    "moderation.jsonl": moderation,
    "bipia_tool_results.jsonl": bipia,
    "code_shield.jsonl": code_shield,
    "false_refusal_mitre.jsonl": mitre_frr,
}


def write_jsonl(path: Path, cases: Iterable[dict[str, Any]]) -> int:
    lines = [json.dumps({k: v for k, v in c.items() if k != "position"}, ensure_ascii=False) for c in cases]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def sample_file(built: dict[str, list[dict[str, Any]]], per_file: int = 4) -> list[dict[str, Any]]:
    """A small mixed file for a quick run: the first `per_file` block and allow cases of each set."""
    out = []
    for cases in built.values():
        for expected in ("block", "allow"):
            out += [c for c in cases if c["expected"] == expected][:per_file]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "tests" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "examples" / "redteam")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    built = {name: build(args.data) for name, build in FILES.items()}
    for name, cases in built.items():
        print(f"{name}: {write_jsonl(args.out / name, cases)} cases")
    print(f"sample.jsonl: {write_jsonl(args.out / 'sample.jsonl', sample_file(built))} cases")


if __name__ == "__main__":
    main()
