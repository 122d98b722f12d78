"""The one exception hierarchy of Agora; library exceptions are wrapped at the boundary.

AgoraError                    root: everything Agora raises on purpose
├── ConfigError               bad configuration file, key, value or override  (CLI exit 2)
├── UsageError                bad command-line arguments                       (CLI exit 2)
├── DataError                 market data that cannot be accepted
│   ├── CandleError           a candle batch refused by the quality checks
│   └── CsvFormatError        a CSV file that cannot be parsed
├── SourceError               a market source failed (exchange, file, generator)
│   └── ExchangeError         the exchange failed after retries
├── StoreError                the SQLite store (schema, migration, disk)
├── ChainError                the EVM chain (node, RPC, deployment, reverts)
│   └── TransactionReverted   a transaction reverted; carries the revert reason
├── PluginError               a strategy plugin could not be loaded, validated or run
├── ModelError                a model cannot be trained, loaded or promoted
│   ├── ModelNotFound         no live model, or no model with that id
│   └── TrainingInterrupted   training was stopped on request; nothing was registered
├── AuditError                the decision trail does not verify
└── ComputeError              a task on the compute backend (Ray) failed or its workers died
"""

from __future__ import annotations


class AgoraError(Exception):
    """Root of every error Agora raises on purpose."""

    exit_code = 1


class ConfigError(AgoraError):
    """A configuration file, key, value or environment override is invalid."""

    exit_code = 2


class UsageError(AgoraError):
    """Command-line arguments are invalid."""

    exit_code = 2


class DataError(AgoraError):
    """Market data that cannot be accepted."""


class CandleError(DataError):
    """A candle batch refused by the quality checks; nothing from it was stored."""

    def __init__(self, message: str, *, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row


class CsvFormatError(DataError):
    """A CSV file that cannot be parsed; `line` is the 1-based line in the file."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class SourceError(AgoraError):
    """A market data source failed."""


class ExchangeError(SourceError):
    """The exchange failed, after the configured retries."""


class StoreError(AgoraError):
    """The SQLite store failed (schema, migration, disk)."""


class ChainError(AgoraError):
    """The chain failed: node, RPC, deployment or transaction."""


class TransactionReverted(ChainError):
    """A transaction reverted; `reason` is the decoded revert reason, if any."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class PluginError(AgoraError):
    """A strategy plugin could not be loaded, validated or run."""


class ModelError(AgoraError):
    """A model cannot be trained, loaded or promoted."""


class ModelNotFound(ModelError):
    """No live model, or no registered model with the id given (`load_policy`)."""


class TrainingInterrupted(ModelError):
    """Training was stopped on request (SIGTERM); nothing of it was registered."""


class AuditError(AgoraError):
    """The decision trail does not verify."""


class ComputeError(AgoraError):
    """A task on the compute backend failed outside Agora's code (a Ray worker died more often
    than it was retried, the cluster went away)."""
