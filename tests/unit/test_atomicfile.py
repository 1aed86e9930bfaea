"""Files put in place whole (:mod:`pillarbox.atomicfile`): written in pieces beside the
target, seen only once complete, never over another's file when created, and nothing left
behind by a failure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pillarbox.atomicfile import StagedFile, create_exclusively, write_atomically


def test_a_staged_file_appears_whole_only_when_created(tmp_path: Path) -> None:
    path = tmp_path / "out" / "calendar.ics"
    with StagedFile(path, 0o600) as staged:
        staged.write(b"BEGIN:")
        assert not path.exists()  # the directory is made; the file not yet
        staged.write(b"VCALENDAR\r\n")
        assert staged.create()
    assert path.read_bytes() == b"BEGIN:VCALENDAR\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["calendar.ics"]  # no temporary left


def test_created_never_over_a_file_there(tmp_path: Path) -> None:
    path = tmp_path / "contacts.vcf"
    path.write_bytes(b"theirs")
    with StagedFile(path) as staged:
        staged.write(b"mine")
        assert not staged.create()
    assert not create_exclusively(path, b"mine")
    assert path.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["contacts.vcf"]
    write_atomically(path, b"replaced")
    assert path.read_bytes() == b"replaced"


def test_a_failure_while_writing_leaves_nothing(tmp_path: Path) -> None:
    def broken_off(path: Path) -> None:
        with StagedFile(path) as staged:
            staged.write(b"BEGIN:VCALENDAR\r\n")
            raise RuntimeError("the calendar went away")

    with pytest.raises(RuntimeError):
        broken_off(tmp_path / "calendar.ics")
    assert list(tmp_path.iterdir()) == []
