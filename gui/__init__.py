"""Secateur desktop window (PySide6 + pyqtgraph). Importing this package loads no Qt."""
