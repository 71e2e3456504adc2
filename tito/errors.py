"""Expected mistakes: reported as one line, never as a traceback."""


class TitoError(Exception):
    """A problem the user can fix; its message says what was wrong and what to do."""
