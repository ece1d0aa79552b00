"""The terminal chat (Textual). `ChatApp` takes its backend (a `ChatSession`) in the constructor.

Nothing here imports textual at module import time except the modules that define widgets, screens and the app,
which only `assistant chat` (and tests) import.
"""
