"""The tiny trained guard models for tests and the offline smoke policy: texts, weights written down, build and
check. Never on the production path."""
