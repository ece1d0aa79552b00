"""The deployer's policy file: schema, loader and warnings (see docs/POLICY_SPEC.md)."""

from guards.policy.base import Action, CodeShieldAction, OnError
from guards.policy.loader import (
    CheckedPolicy,
    PolicyError,
    PolicyIssue,
    check_policy_file,
    check_policy_text,
    load_policy,
    parse_policy_text,
)
from guards.policy.registry import GUARD_NAMES, STAGE_NAMES, GuardName, StageName
from guards.policy.schema import Policy
from guards.policy.warnings import PolicyWarning, policy_warning_items, policy_warnings

__all__ = [
    "GUARD_NAMES",
    "STAGE_NAMES",
    "Action",
    "CheckedPolicy",
    "CodeShieldAction",
    "GuardName",
    "OnError",
    "Policy",
    "PolicyError",
    "PolicyIssue",
    "PolicyWarning",
    "StageName",
    "check_policy_file",
    "check_policy_text",
    "load_policy",
    "parse_policy_text",
    "policy_warning_items",
    "policy_warnings",
]
