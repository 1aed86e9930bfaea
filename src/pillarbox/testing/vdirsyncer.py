"""A real vdirsyncer (Debian's package) set up against a live server: one pair syncing a local
vdir (one file per item) with the account's address books or calendars over HTTPS, trusting
the server's self-signed certificate. The CardDAV and CalDAV interop tests drive it."""

from __future__ import annotations

from pathlib import Path

from pillarbox.net.tls import tls_paths
from pillarbox.testing.live import TEST_PASSWORD, LiveServer
from pillarbox.testing.peers import require, run


class Vdirsyncer:
    """One vdirsyncer set-up: its config, the local vdir and its status directory.
    ``kind`` is the server storage's type, "carddav" or "caldav"; the collections are found
    from the host alone (``/.well-known/<kind>``, the principal, the home set)."""

    def __init__(self, root: Path, live: LiveServer, user: str, kind: str, fileext: str) -> None:
        self.program = require("vdirsyncer", "vdirsyncer")
        self.local = root / "local"
        self.config = root / "config"
        self.config.write_text(
            f'[general]\nstatus_path = "{root}/status/"\n\n'
            '[pair dav]\na = "local"\nb = "server"\ncollections = ["from b"]\n'
            'conflict_resolution = "b wins"\n\n'
            f'[storage local]\ntype = "filesystem"\npath = "{self.local}/"\n'
            f'fileext = "{fileext}"\n\n'
            f'[storage server]\ntype = "{kind}"\n'
            f'url = "https://127.0.0.1:{live.port("https")}/"\n'
            f'username = "{user}"\npassword = "{TEST_PASSWORD}"\n'
            f'verify = "{tls_paths(live.config)[0]}"\n'
        )

    def sync(self) -> str:
        """One run of discovery and sync; what it did (a line per item copied or deleted)."""
        env = {"VDIRSYNCER_CONFIG": str(self.config)}
        run([self.program, "discover"], env=env, stdin="y\n" * 3, timeout=60)
        result = run([self.program, "sync"], env=env, timeout=60)
        assert "error" not in result.stderr.lower(), result.stderr
        return result.stderr
