"""The sharing page's choices (:mod:`pillarbox.web.sharing`): the presets are the typical sets
docs/shared-mailboxes.md names, every right has a label, a form's choice becomes rights."""

from __future__ import annotations

from pathlib import Path

import pytest

from pillarbox.errors import UserError
from pillarbox.store.aclrows import STORED_RIGHTS
from pillarbox.web.sharing import CUSTOM, PRESETS, RIGHT_LABELS, chosen_rights, preset_label

DOC = Path(__file__).resolve().parents[2] / "docs" / "shared-mailboxes.md"


def test_presets_are_the_documented_typical_sets() -> None:
    assert [p.rights for p in PRESETS] == ["lr", "lrs", "lrswite", "lrswipkxtea"]
    text = DOC.read_text(encoding="utf-8")
    for preset in PRESETS:
        assert f"| {preset.label} | `{preset.rights}` |" in text


def test_every_right_has_a_label_in_rfc_order() -> None:
    assert "".join(RIGHT_LABELS) == STORED_RIGHTS


def test_a_forms_choice_becomes_rights() -> None:
    assert chosen_rights("read-write", ["a"]) == "lrswite"  # a preset ignores the boxes
    assert chosen_rights(CUSTOM, ["l", "r", "i"]) == "lri"
    with pytest.raises(UserError):
        chosen_rights("everything", [])
    assert preset_label("rl") == "Read only"
    assert preset_label("lrsw") == "Custom"
    assert preset_label("lrste") == "Custom"
