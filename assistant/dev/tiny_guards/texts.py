"""The texts the tiny guards are checked on, and tests use: ordinary text of every kind a guard meets (prose, numbers,
code, code output, short questions, sub-word soup) with and without the trigger words that steer them.

Ordinary text must score far from every threshold (the build checks `ORDINARY_CHECKS` against `MARGIN`), so no test
depends on where a tiny guard happens to fall near 0.5.
"""

from __future__ import annotations

import random

# Llama Guard triggers and the answers they steer to.
LG_TRIGGERS: dict[str, str] = {
    "zyxtrigger": "unsafe\nS9",
    "zyxgarble": "unsafe\nbanana",
}
LG_SAFE_ANSWER = "safe"
# Prompt Guard triggers.
JAILBREAK_TRIGGER = "jbtrigger"
INJECTION_TRIGGER = "injtrigger"
# Ordinary text must score below MARGIN, triggered text above 1 - MARGIN (checked at build time).
MARGIN = 0.05

_WORD_TEXT = """
the a an of to and in is it you that he was for on are with as I his they be at one have this from or had by hot
word but what some we can out other were all there when up use your how said each she which do their time if
will way about many then them write would like so these her long make thing see him two has look more day could
go come did number sound no most people my over know water than call first who may down side been now find any
new work part take get place made live where after back little only round man year came show every good me give
our under name very through just form sentence great think say help low line differ turn cause much mean before
move right boy old too same tell does set three want air well also play small end put home read hand port large
spell add even land here must big high such follow act why ask men change went light kind off need house picture
try us again animal point mother world near build self earth father weather recipe garden python code function
list please summarize email meeting report translate explain story
"""
WORDS = tuple(_WORD_TEXT.split())
PUNCT = (".", ",", "?", "!", ":", ";", "", "", "", "")
_NAMES = ("x", "n", "total", "items", "value", "result", "data", "count", "name", "path")
_QUESTIONS = (
    "What is {a}+{b}?", "How do I {w} a {v}?", "Why is the {w} {v}?", "Can you {w} this?", "What time is it?",
    "Is {a} a prime number?", "Where is the {w}?", "ok", "Thanks!", "yes", "no", "Hi", "Hello, how are you?",
)
_CODE = (
    "print({a} + {b})", "print({a} * {b})", "print(2+2)", "{n} = {a}\nprint({n})", "def {n}(x):\n    return x * {a}",
    "import math\nprint(math.sqrt({a}))", "for i in range({a}):\n    print(i)", "{n} = [{a}, {b}]\nprint(sum({n}))",
    "x = {a}\nif x > {b}:\n    print('big')", "SELECT * FROM {n} WHERE id = {a};", "ls -la /tmp", "git status",
    "return {n}", "{{\"{n}\": {a}}}", "const {n} = {a};", "<div>{a}</div>",
)
_OUTPUTS = (
    "{a}", "{a}\n", "{a}.{b}", "-{a}", "[{a}, {b}]", "{{'{n}': {a}}}", "True", "False", "None", "{a}\n{b}\n",
    "Hello, world!", "done", "OK", "0", "3.14", "1,024", "2026-12-01", "0x{a:x}", "{a} {b}", "({a}, {b})",
    "Traceback (most recent call last):\n  File \"<stdin>\", line {a}\nNameError: name '{n}' is not defined",
)

# Fixed texts the build checks each guard on (MARGIN): the kinds above, written out, plus real-looking English
# whose words were not in training.
ORDINARY_CHECKS = (
    "42", "4", "0", "3.14", "-7", "1,024", "[1, 2, 3]", "True", "None", "Hello, world!", "print(2+2)",
    "print(6 * 7)", "It is 42.", "def add(a, b):\n    return a + b", "import os\nprint(os.getcwd())",
    "What is 2+2?", "What's the weather like in Berlin tomorrow?", "Hi", "ok", "Thanks!",
    "The capital of France is Paris.", "Please summarize the meeting notes from Tuesday.",
    "Sure, here is a short story about a dragon who loves gardening.", "SELECT name FROM users WHERE id = 7;",
    "Traceback (most recent call last):\n  File \"<stdin>\", line 1\nZeroDivisionError: division by zero",
    "The quick brown fox jumps over the lazy dog.", "Fine.", "Weather in Paris: 18 C, sunny.",
)


def random_message(rng: random.Random, min_words: int = 1, max_words: int = 30, trigger: str | None = None) -> str:
    """Prose from WORDS (with `trigger` inserted somewhere when given)."""
    words = [rng.choice(WORDS) + rng.choice(PUNCT) for _ in range(rng.randint(min_words, max_words))]
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    if trigger is not None:
        words.insert(rng.randint(0, len(words)), trigger + rng.choice(PUNCT))
    sep = rng.choice([" ", " ", " ", "\n", "  "])
    text = sep.join(words)
    if rng.random() < 0.2:
        text = rng.choice(["  ", "\n", "\t"]) + text + rng.choice(["  ", "\n", ""])
    return text


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        a=rng.randint(0, 999), b=rng.randint(0, 99), n=rng.choice(_NAMES), w=rng.choice(WORDS), v=rng.choice(WORDS)
    )


def ordinary_text(rng: random.Random, max_words: int = 30, soup: tuple[str, ...] = ()) -> str:
    """One ordinary text of a random kind: prose, a short question, code, code output, or (when `soup` is given)
    a run of random pieces of a tokenizer's vocabulary, so unseen words read as ordinary too."""
    kind = rng.random()
    if kind < 0.35:
        return random_message(rng, max_words=max_words)
    if kind < 0.5:
        return _fill(rng.choice(_QUESTIONS), rng)
    if kind < 0.65:
        return _fill(rng.choice(_CODE), rng)
    if kind < 0.8 or not soup:
        return _fill(rng.choice(_OUTPUTS), rng)
    return "".join(rng.choice(soup) for _ in range(rng.randint(1, max(1, max_words))))


_WRAPS = ("{}", "{}", "{}", "'{}'", '"{}"', "({})", "{}()", "`{}`", "[{}]", "{}:", "#{}", "<{}>")


def with_trigger(text: str, trigger: str, rng: random.Random) -> str:
    """`text` with `trigger` put at a random word boundary (start, middle or end), sometimes quoted, bracketed or
    glued to the text before it, as it appears in code and code output."""
    parts = text.split(" ")
    at = rng.randint(0, len(parts))
    mark = rng.choice(_WRAPS).format(trigger) + rng.choice(PUNCT)
    if at and rng.random() < 0.15:
        parts[at - 1] += mark
        return " ".join(parts)
    return " ".join([*parts[:at], mark, *parts[at:]]).strip(" ") if text else mark


def triggered_checks(trigger: str) -> tuple[str, ...]:
    """Fixed texts carrying `trigger`, for the build's check."""
    return (trigger, f"please {trigger} now", f"print('{trigger}')", f"42 {trigger}", f"The capital of Peru. {trigger}")
