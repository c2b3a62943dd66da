"""Places where images live. Each implements what it can of the protocols in ``base``."""
