"""The one error type for bad user input (config values, dataset files, search-space files).

Its message is a single line naming the file (when there is one), the row/field, and what is allowed.
``mer-orch`` turns it into that line on stderr and exit code 2. It subclasses ValueError so library
callers (notebooks, tests) can catch it as the ValueError the public API promises.
"""


class InputError(ValueError):
    """Bad user input. ``str(err)`` is one line: ``<file>: <field/row>: <problem>; expected <allowed>``."""
