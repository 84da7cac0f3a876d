"""The public Python API's own pieces (re-exported by `mftlab/__init__.py`; import from `mftlab`)."""
