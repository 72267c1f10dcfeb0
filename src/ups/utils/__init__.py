"""The seed's import paths (`ups.utils.stage_tracker`, `ups.utils.checkpoint_manager`), kept stable."""
