"""The exceptions for problems the user can fix; the CLI prints their message as one line."""


class SmallganError(Exception):
    """Bad input (option, recipe, dataset, checkpoint). The message names the thing and the fix."""


class ConfigError(SmallganError, ValueError):
    """A bad recipe, key or value. The message is one line that names the key and the fix.

    Here rather than in :mod:`smallgan.config` because the architectures raise it too, and the config
    validates through them.
    """


class TrainingDiverged(SmallganError):
    """Too many consecutive non-finite steps; the last good checkpoint is left as it was (exit code 3)."""
