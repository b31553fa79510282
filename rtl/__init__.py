"""Synthesizable Amaranth components of smtni."""
