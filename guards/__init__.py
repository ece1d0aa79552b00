"""Guards (Llama Guard 3, Prompt Guard, Code Shield), the policy, and the pipeline that runs them.

Library logging: `logging.getLogger(__name__)` per module, silent unless the application configures it.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
