"""The hash-chained audit log: writing it (log), its record format (format), verifying it (verify), showing it
(show)."""
