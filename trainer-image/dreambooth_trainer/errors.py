"""Errors the trainer reports to the operator, with the exit code each one ends the process with.

An ``InputError`` (bad config, bad data, missing model, refused credentials) will fail the same
way on every retry: the operator should fail the job (exit code 2, a pod failure policy rule)
instead of retrying it.
"""

from __future__ import annotations

from dreambooth_api.names import EXIT_FAILED, EXIT_INVALID_INPUT


class TrainerError(Exception):
    exit_code = EXIT_FAILED
    reason = "Error"


class InputError(TrainerError):
    """Retrying cannot help: the inputs are wrong."""

    exit_code = EXIT_INVALID_INPUT
    reason = "InvalidInput"


class ConfigError(InputError):
    reason = "InvalidConfig"


class DataError(InputError):
    reason = "InvalidData"


class ModelNotFound(InputError):
    reason = "ModelNotFound"


class StorageError(TrainerError):
    reason = "StorageError"


class StorageAccessDenied(StorageError, InputError):
    exit_code = EXIT_INVALID_INPUT
    reason = "StorageAccessDenied"


class StorageNotFound(StorageError, InputError):
    exit_code = EXIT_INVALID_INPUT
    reason = "StorageNotFound"


class StorageTooLarge(StorageError, InputError):
    """An object over the size its reader allows: refused unread."""

    exit_code = EXIT_INVALID_INPUT
    reason = "InvalidData"
