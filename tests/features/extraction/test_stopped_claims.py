"""A claim held by a stopped process (Ctrl-Z) is reported, naming the process, and taken over;
one held by a running process is left alone."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from ufd_lib.features.extraction.work_claims import GroupClaims


def _hold(folder, claimed, stop: bool) -> None:
    claims = GroupClaims(folder)
    assert claims.try_claim("g")
    claimed.set()
    if stop:
        os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(60)


def _state(pid: int) -> str:
    text = open(f"/proc/{pid}/stat").read()
    return text[text.rfind(")") + 2]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stop", [True, False], ids=["stopped", "running"])
def test_a_stopped_holder_is_named_and_taken_over(tmp_path, stop):
    claimed = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(tmp_path, claimed, stop), daemon=True)
    holder.start()
    try:
        assert claimed.wait(30)
        while stop and _state(holder.pid) != "T":
            time.sleep(0.01)
        claims = GroupClaims(tmp_path)
        if stop:
            with pytest.warns(UserWarning, match=f"process {holder.pid} .* is stopped"):
                assert claims.try_claim("g")
            claims.release("g")
        else:
            assert not claims.try_claim("g")
    finally:
        holder.kill()
        holder.join(10)
