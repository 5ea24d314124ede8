"""Errors the trainer reports to the operator, with the exit code each one ends the process with.

An ``InputError`` (bad config, bad data, missing model, refused credentials) will fail the same
way on every retry: the operator should fail the job (exit code 2, a pod failure policy rule)
instead of retrying it.
"""

from __future__ import annotations


class TrainerError(Exception):
    exit_code = 1
    reason = "Error"


class InputError(TrainerError):
    """Retrying cannot help: the inputs are wrong."""

    exit_code = 2
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
    exit_code = 2
    reason = "StorageAccessDenied"


class StorageNotFound(StorageError, InputError):
    exit_code = 2
    reason = "StorageNotFound"
