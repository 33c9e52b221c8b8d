"""One exception type for problems the user can fix; the CLI prints its message as one line."""


class SmallganError(Exception):
    """Bad input (option, recipe, dataset, checkpoint). The message names the thing and the fix."""
