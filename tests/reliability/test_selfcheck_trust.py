"""The selfcheck's checks of what ufd trusts pass on this code."""
from __future__ import annotations

import pytest

from ufd_lib.reliability import trust_checks


@pytest.mark.parametrize("check", [trust_checks.check_directory_links, trust_checks.check_racy_identities,
                                   trust_checks.check_overflowing_probes, trust_checks.check_torn_artifact_log,
                                   trust_checks.check_formula_cells])
def test_trust_checks_pass(check, tmp_path):
    result = check(tmp_path)
    assert result.passed, result
