"""Typed errors. Every message names the offending value and says how to fix it.

The CLI turns any MftlabError into a one-line `Error: ...` with exit code 1; nothing
else in the library prints.
"""


class MftlabError(Exception):
    """Base class for every error a user can cause and fix."""


class ConfigError(MftlabError):
    """An option or configuration value is out of range or inconsistent."""


class TargetError(MftlabError):
    """Module targeting matched nothing or referred to something that does not exist."""


class MaskFormatError(MftlabError):
    """A mask file is missing, truncated, corrupted or not a mask at all."""


class MaskMismatchError(MftlabError):
    """A valid mask does not fit the model (shapes, tensors or fingerprints differ)."""


class ModelLoadError(MftlabError):
    """A model could not be loaded from the given name, folder or file."""


class DataError(MftlabError):
    """A data file is missing, empty or holds malformed records."""


class TrainingError(MftlabError):
    """Training cannot go on (e.g. the loss became NaN or infinite); earlier checkpoints are kept."""
