"""Which ``unauthorized`` refusals name the account as deactivated or revoked (RFC 8555
§7.3.6): the CAs' own wordings, as their sources and tests have them; Pebble's are also met
live in tests/interop/test_acme_pebble.py."""

from __future__ import annotations

import pytest
from acme import messages

from pillarbox.net.acmeaccount import refused_account_status

UNAUTHORIZED = [
    # Boulder (Let's Encrypt): a request under the account, and its key's new-account request.
    ('Account is not valid, has status "deactivated"', "deactivated"),
    ('Unable to validate JWS :: Account is not valid, has status "revoked"', "revoked"),
    ("An account with the provided public key exists but is deactivated", "deactivated"),
    # Pebble.
    ("Account has been deactivated", "deactivated"),
    # Refusals that are not about the account's status.
    ("Account that authenticated the request does not own the specified order", ""),
    ("Account does not own authorization", ""),
    ("CAA record for example.org prevents issuance", ""),
    ("", ""),
    ("authorizations deactivatedly refused", ""),  # a word, not a part of one
]


@pytest.mark.parametrize(("detail", "status"), UNAUTHORIZED)
def test_the_status_an_unauthorized_refusal_names(detail: str, status: str) -> None:
    refusal = messages.Error.with_code("unauthorized", detail=detail)
    assert refused_account_status(refusal) == status


@pytest.mark.parametrize("code", ["rateLimited", "accountDoesNotExist", "malformed"])
def test_another_kind_of_refusal_names_none_whatever_its_words(code: str) -> None:
    refusal = messages.Error.with_code(code, detail="Account has been deactivated")
    assert refused_account_status(refusal) == ""
