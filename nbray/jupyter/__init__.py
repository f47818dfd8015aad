"""Notebook integration: rich reprs, magics and widgets."""
