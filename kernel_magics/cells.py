"""Cell analysis for the magics: a re-export of :mod:`nbpipe.export.cells`.

The analysis is pure AST work shared by ``%%component``, the notebook exporter and the Lab
panel, so it lives where the exporter (which must not import the magics) can use it.
"""

from nbpipe.export.cells import CellFlow, Reads, analyze_cell, classify_reads, is_code, later_reads

__all__ = ["CellFlow", "Reads", "analyze_cell", "classify_reads", "is_code", "later_reads"]
