"""Notebook integration: rich reprs, magics and widgets."""

from nbray.jupyter import reprs as _reprs

_reprs.register()
