"""The model layer: Llama 3.1 tokenizer, prompt format, tool-call parser and backends.

Library logging: `logging.getLogger(__name__)` per module, silent unless the application configures it.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
