"""How commands show the configured store (`pillarbox status`, `pillarbox init`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pillarbox.store.open import shown_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # A password never printed: in the user part, or as libpq's `password` parameter.
        (
            "postgresql://mail:s3cr%40t@db.example:5432/mail?sslmode=require&password=abc",
            "postgresql://mail:***@db.example:5432/mail?sslmode=require&password=***",
        ),
        ("postgres://u:p@h/d", "postgres://u:***@h/d"),
        # libpq's other parameters and an empty password kept as written.
        (
            "postgresql://u:@h/d?options=-csearch_path%3Dmail%20-cx%3D1",
            "postgresql://u:***@h/d?options=-csearch_path%3Dmail%20-cx%3D1",
        ),
        ("postgresql://postgres@127.0.0.1/postgres", "postgresql://postgres@127.0.0.1/postgres"),
        # SQLite: the URL and the file it names, relative to the data directory.
        ("sqlite:", "sqlite: (/data/pillarbox.sqlite3)"),
        ("sqlite:mail.db", "sqlite:mail.db (/data/mail.db)"),
        ("sqlite:///var/x.db?blobs=files", "sqlite:///var/x.db?blobs=files (/var/x.db)"),
    ],
)
def test_shown_url(url: str, shown: str) -> None:
    assert shown_url(url, Path("/data")) == shown
