"""Behavioural models of smtni: SMT core, memory hierarchy, OS, message library, reference NI.

Imports nothing of :mod:`rtl` but the formats in :mod:`rtl.layouts`.
"""
