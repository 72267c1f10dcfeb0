"""The seed's import path for stage tracking; the implementation lives in `ups.resume.tracker`."""

from ups.resume.tracker import StageStatus, StageStatusType, StageTracker

__all__ = ["StageStatus", "StageStatusType", "StageTracker"]
