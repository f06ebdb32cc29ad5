"""Secateur desktop window (PySide6 + pyqtgraph). Importing this package loads no Qt.

Where things are:

- ``launcher``, ``options``, ``app``: the entry point, the window's flags, start-up.
- ``main_window``: the window's layout and mechanics; it joins the parts below.
- ``session``: the open document (model, data, result, sweep, modified), no widgets.
- ``layer_selection``: the checked layers and their amounts, plain Python.
- ``layer_tree_model``, ``layer_tree``: the tree's item model over the selection, its view.
- ``settings_panel``, ``recipe_state``, ``recipe_editor``: the settings, widgets <-> recipe.
- ``results_area``, ``results``, ``charts``, ``sensitivity_tab``: what a run shows.
- ``open_flow``, ``compress_flow``, ``save_flow``, ``sweep_controller``: the user's jobs.
- ``worker``, ``jobs``: one background job at a time, and the jobs as plain generators.
- ``feedback``, ``dialogs``: messages and questions (dialogs, or stderr when scripted).
- ``actions``: every menu and toolbar action, declared once.
- ``choices``, ``report_rows``: what the window takes from the engine (the methods,
  schemes and formats offered; the rows and texts of a report).
- ``prefs``: what the window remembers between sessions.
"""
