"""Errors caused by the user's input. `run.py` reports each as one line, without a traceback."""


class ConfigError(ValueError):
    """A config value is not allowed; the message names the key, the value and what is."""


class DatasetError(ValueError):
    """A data set is missing, incomplete or corrupt; the message names the file and the fix."""


class ConversionError(ValueError):
    """A model cannot be converted (unsupported layer, NaN/inf weights or activations)."""


class CheckpointError(ValueError):
    """A checkpoint given to convert is missing, unreadable, or does not fit the configured model."""


USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DatasetError, ConversionError, CheckpointError)
