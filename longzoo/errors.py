"""The one exception type that means "the user asked for something we cannot do"."""


class LongzooError(Exception):
    """A problem the user can fix (bad path, bad size, unsupported model, ...).

    The CLI prints its message as one line and exits non-zero; anything else that
    escapes is a bug in longzoo and keeps its traceback.
    """
