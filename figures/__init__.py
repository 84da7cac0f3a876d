"""Figures: pure functions from saved results (JSON / npz) to PNG, PDF and self-contained HTML."""
