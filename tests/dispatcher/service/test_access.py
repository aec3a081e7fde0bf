"""The role table of the token holders' use cases (dispatcher/service/access.py)."""

from __future__ import annotations

import pytest

from dispatcher.domain.errors import Forbidden
from dispatcher.service.access import RULES, check, roles_for
from dispatcher.service.tokens import ROLES


def test_supervisors_may_do_everything_and_every_role_is_known() -> None:
    for use_case, roles in RULES.items():
        assert "supervisor" in roles, use_case
        assert set(roles) <= set(ROLES)


@pytest.mark.parametrize("role,use_case", [
    ("integration", "customers.read"), ("integration", "configuration.change"),
    ("agent", "tasks.change"), ("agent", "webhooks"), ("agent", "reports.read"),
])
def test_refusals(role: str, use_case: str) -> None:
    with pytest.raises(Forbidden):
        check(role, "x", use_case)


def test_allowed_and_unknown() -> None:
    check("integration", "crm", "tasks.change")
    check("agent", "a1", "answers.read")
    with pytest.raises(KeyError):
        roles_for("nothing.declared")
