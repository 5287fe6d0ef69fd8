"""Errors a user can fix: the CLI prints their message alone, without a traceback."""


class UserError(ValueError):
    """Bad input (path, name, config, data) with a message that names the problem and the fix."""
