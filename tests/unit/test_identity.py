from __future__ import annotations

import pytest

from mailer.errors import Forbidden, Unauthenticated
from mailer.identity import caller_from_claims, parse_groups


@pytest.mark.parametrize(
    ("raw", "groups"),
    [
        (["admin", "x"], ["admin", "x"]),
        ("[admin x]", ["admin", "x"]),
        ("admin,x", ["admin", "x"]),
        (None, []),
    ],
)
def test_groups_claim_in_every_shape_the_authorizer_sends(raw, groups):
    assert parse_groups(raw) == groups


def test_caller_from_id_token_claims():
    caller = caller_from_claims(
        {
            "sub": "u-1",
            "custom:tenant_id": "acme",
            "email": "a@acme.example",
            "email_verified": "true",
            "cognito:groups": "[admin]",
        }
    )

    assert (caller.tenant_id, caller.user_id, caller.email, caller.is_admin) == (
        "acme",
        "u-1",
        "a@acme.example",
        True,
    )


def test_no_tenant_is_forbidden_and_no_claims_unauthenticated():
    with pytest.raises(Forbidden):
        caller_from_claims({"sub": "u-1"})
    with pytest.raises(Unauthenticated):
        caller_from_claims({})


def test_tenant_id_with_key_separators_is_refused():
    with pytest.raises(Forbidden):
        caller_from_claims({"sub": "u-1", "custom:tenant_id": "acme#SETTINGS"})


@pytest.mark.parametrize("verified", [None, "false", False, "False ", "yes"])
def test_an_unverified_email_claim_is_not_the_callers_address(verified):
    claims = {"sub": "u-1", "custom:tenant_id": "acme", "email": "someone@else.example"}
    if verified is not None:
        claims["email_verified"] = verified

    assert caller_from_claims(claims).email is None


@pytest.mark.parametrize("verified", ["true", True, "TRUE"])
def test_a_verified_email_claim_is_the_callers_address(verified):
    claims = {"sub": "u-1", "custom:tenant_id": "acme", "email": "a@acme.example", "email_verified": verified}

    assert caller_from_claims(claims).email == "a@acme.example"
