"""Code Shield on model-written code: the scanner (guard, adapter, semgrep_*), the project's own rules
(project_rules, rules/), and its runner."""
