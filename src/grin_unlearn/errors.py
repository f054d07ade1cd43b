"""Errors a user can cause.

Every problem with user input (a bad path, a bad value, an empty split, a malformed file) raises
:class:`UserInputError` with one sentence naming the input and what was expected. The CLI turns it
into exit code 2 and prints the message without a traceback.
"""


class UserInputError(ValueError):
    """A problem with something the user passed in (path, value, file content)."""


class TrainingStoppedError(RuntimeError):
    """Training stopped on its own (the loss became NaN/inf); the last good checkpoint is kept.

    Not the user's input, so not a :class:`UserInputError`: the CLI prints the message (which names
    the step and the checkpoint to resume from) and exits with code 3.
    """
