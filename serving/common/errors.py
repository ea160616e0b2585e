"""Expected failures: each carries a one-line message the CLI prints without a traceback."""

from __future__ import annotations


class MedcouncilError(Exception):
    """Base of every expected failure; ``str(error)`` is the one-line message shown to the user."""


class ConfigError(MedcouncilError):
    """A configuration file or flag is invalid."""


class ModelPathError(MedcouncilError):
    """A model or adapter path does not exist."""


class ChecksumError(MedcouncilError):
    """The embedded GGUF could not be assembled with the expected sha256."""


class PortInUseError(MedcouncilError):
    """The requested port is already bound on 127.0.0.1."""


class ServerStartError(MedcouncilError):
    """The engine process exited or never became healthy during start-up."""


class EndpointUnreachableError(MedcouncilError):
    """An OpenAI-compatible endpoint did not answer."""


class EngineDiedError(EndpointUnreachableError):
    """The engine process medcouncil started is gone (a signal, the out-of-memory killer, an exit): the message
    names the engine, its pid, how it ended and its log. Nothing more can be answered until it is back, so runs stop
    (resumable) instead of retrying."""


class RequestRejectedError(MedcouncilError):
    """The engine refused the request itself (HTTP 400/413/422: a prompt longer than the context, ...): the same
    request will be refused again, so it is not retried."""


def first_line(error: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none): for a one-line error that
    quotes a library's multi-line failure."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
