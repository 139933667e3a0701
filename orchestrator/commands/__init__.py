"""One module per ``mer-orch`` sub-command; each exposes a click command named ``command``."""
