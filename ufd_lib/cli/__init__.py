"""The ``ufd`` command line: :mod:`parser` (every flag), :mod:`args` (shared argument types and
extraction options), :mod:`main` (dispatch and exit statuses), and one module per command."""
