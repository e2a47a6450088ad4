"""One exception type per failure family; every message names the file and the fix.

All derive from :class:`PneumocamError`, so a script can catch one type, print the
message and exit non-zero without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class PneumocamError(Exception):
    """Base class for every error this package raises on purpose."""


class DicomReadError(PneumocamError):
    """A DICOM (or image) file that cannot be turned into a radiograph.

    Attributes:
        path: the offending file.
        reason: a short, human-readable reason (also used in ``skipped.csv``).
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class LabelsError(PneumocamError):
    """A missing or malformed RSNA labels / class-info CSV."""


class DataSourceError(PneumocamError):
    """Missing input folders, or outputs from one data source about to mix with another's."""


class ProcessedDataError(PneumocamError):
    """``data/Processed`` missing, empty, inconsistent or unusable for training."""


class CheckpointError(PneumocamError):
    """A checkpoint that is missing, untrusted (not plain tensors) or does not fit the model."""


class ConfigError(PneumocamError):
    """An invalid combination of settings (flags, config.json)."""


class OutputFolderError(PneumocamError):
    """An output folder that cannot be created or written (a file in its place, read-only,
    no permission), found before any work is done."""


class TrainingDivergedError(PneumocamError):
    """The training loss (or a validation logit) became NaN or infinite."""


class RunOutputsError(PneumocamError):
    """Missing or inconsistent outputs of a training run (predictions, eval JSON, history CSV)."""
