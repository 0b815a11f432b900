"""``ufd selfcheck``: faults injected (SIGKILL, concurrent writers, damaged chunks) and hostile
inputs tried, every result compared with a clean run."""
