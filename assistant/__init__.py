"""The assistant: agent, Python API, command line, terminal chat and server."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())  # silent unless configured (assistant.logs)
