"""Secateur desktop window (PySide6 + pyqtgraph). Importing this package loads no Qt.

Where things are:

- ``launcher``, ``options``, ``app``: the entry point, the window's flags, start-up.
- ``main_window``: the window's layout and mechanics; it joins the parts below.
- ``session``: the open document (model, data, result, sweep, modified), no widgets.
- ``layer_selection``: the checked layers and their amounts, plain Python.
- ``layer_tree_model``, ``layer_tree``, ``layer_details``: the tree's item model over the
  selection, its view (editors, menus, columns), the current layer's details pane.
- ``settings_panel``, ``recipe_state``, ``recipe_editor``: the settings, widgets <-> recipe.
- ``results_area``, ``results``, ``charts``, ``loss_chart``: what a run shows.
- ``sensitivity_tab``, ``sensitivity_heatmap``, ``sensitivity_panel``: the sweep's views.
- ``plan_tab``: what Recommend measured and chose.
- ``open_flow``, ``compress_flow``, ``save_flow``, ``sweep_controller``, ``plan_flow``: the
  user's jobs; ``close_guard``: whether the window may close now.
- ``worker``: one background job at a time (the jobs are ``core.tasks``' generators).
- ``feedback``, ``dialogs``: messages and questions (dialogs, or stderr when scripted).
- ``actions``, ``file_menus``: every menu and toolbar action, declared once; the filled
  submenus (recent files, demos).
- ``choices``, ``report_rows``: what the window takes from the engine (the methods,
  schemes and formats offered; the rows and texts of a report).
- ``prefs``: what the window remembers between sessions.
"""
