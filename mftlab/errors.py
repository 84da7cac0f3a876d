"""Typed errors. Every message names the offending value and says how to fix it.

The CLI turns any MftlabError into a one-line `Error: ...` with exit code 1; nothing
else in the library prints.
"""


class MftlabError(Exception):
    """Base class for every error a user can cause and fix.

    An error about one option is made with `for_option`: from Python it reads
    `mask_ratio=1.5 is outside (0, 1); ...` (the argument's name), and `cli_message()` gives the
    command line's wording `--mask-ratio 1.5 is outside (0, 1); ...`.
    """

    field: str | None = None  # the option's name as a Python argument (mask_ratio)
    flag: str | None = None  # the same option on the command line (--mask-ratio)

    @classmethod
    def for_option(cls, field: str, value, problem: str, quote: bool = False, flag: str | None = None):
        """An error about `field=value`; `quote` writes the value in quotes ('layer')."""
        text = f"'{value}'" if quote else f"{value}"
        error = cls(f"{field}={text} {problem}")
        error.field, error.flag = field, flag or "--" + field.replace("_", "-")
        error.cli_text = f"{error.flag} {text} {problem}"
        return error

    def cli_message(self) -> str:
        """The message in the command line's words (flags instead of argument names)."""
        return getattr(self, "cli_text", None) or str(self)


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
