"""The artifact log heals itself: a torn last line is cut off before the next append, and a
line that is not a record is skipped with a warning, never a JSON decode error."""
from __future__ import annotations

import pytest

from ufd_lib.report.artifact_log import ARTIFACTS, append_entry, read_artifacts

TABLE = {"kind": "table", "name": "ap", "caption": "AP", "notebook": "03"}
FIGURE = {"kind": "figure", "name": "bars", "caption": "bars", "notebook": "03"}


def test_a_torn_last_line_is_cut_off_before_the_next_record(tmp_path):
    append_entry(tmp_path, TABLE)
    with open(tmp_path / ARTIFACTS, "a") as handle:
        handle.write('{"kind": "figure", "na')  # the disk filled up mid-line
    with pytest.warns(UserWarning, match="torn"):
        read_artifacts(tmp_path)
    with pytest.warns(UserWarning, match="last record was torn"):
        append_entry(tmp_path, FIGURE)
    assert read_artifacts(tmp_path) == [TABLE, FIGURE]
    assert (tmp_path / ARTIFACTS).read_text().count("\n") == 2


@pytest.mark.parametrize("line", ["{not json", "[1, 2]", '{"kind": "table"}', '"text"',
                                  '{"kind": "notice", "text": 3}'])
def test_a_line_that_is_not_a_record_is_skipped_with_a_warning(tmp_path, line):
    append_entry(tmp_path, TABLE)
    with open(tmp_path / ARTIFACTS, "a") as handle:
        handle.write(line + "\n")
    append_entry(tmp_path, FIGURE)
    with pytest.warns(UserWarning, match=r"line 2: not a record"):
        assert read_artifacts(tmp_path) == [TABLE, FIGURE]
