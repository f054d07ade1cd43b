"""Errors a user can cause.

Every problem with user input (a bad path, a bad value, an empty split, a malformed file) raises
:class:`UserInputError` with one sentence naming the input and what was expected. The CLI turns it
into exit code 2 and prints the message without a traceback.
"""


class UserInputError(ValueError):
    """A problem with something the user passed in (path, value, file content)."""
