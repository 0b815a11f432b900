"""Hostile inputs: malformed command lines never crash the process (image files:
test_hostile_images.py)."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ufd_lib.cli.main import main

FLAGS = ["--encoder", "--classifier", "--train", "--k", "--probe", "--test", "--out", "--cache-dir",
         "--jpeg-quality", "--blur-sigma", "--sampling", "--strict", "--device", "--batch-size", "--workers",
         "--max-pixels", "--json", "--val", "--profile", "--only", "--augmented-views", "--allow-pickled-lists"]
token = st.one_of(
    st.sampled_from(FLAGS),
    st.sampled_from(["knn", "linear", "all", "official", "-1", "0", "nan", "inf", "1e309", "x=", "=y", "a=b:c",
                     "random-clip:nope", "clip:", ":", "", "101", "cpu", "smoke"]),
    st.text(alphabet=st.characters(blacklist_characters="/.\x00", blacklist_categories=("Cs",)), max_size=12),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["evaluate", "train-probe", "predict", "reproduce"]),
       arguments=st.lists(token, max_size=8))
def test_malformed_command_lines_exit_2_with_one_line(command, arguments, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        status = main([command, *arguments])
    except SystemExit as exit_:
        status = exit_.code
    error = capsys.readouterr().err
    assert status == 2, (arguments, error)
    lines = [line for line in error.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in error
