"""The recipe the window shows: the layer selection plus the settings panel, both ways.

``RecipeEditor`` builds the one Recipe from the widgets, sets the widgets from a recipe (a
file, the demo's, the neutral start of a new model), loads and saves recipe files, and keeps
the preview of what the recipe will do up to date (a moment after each edit): the quantize
settings' layers in the tree and a one-line summary under the settings, and, for a recipe
that removes channels, a request for its removal plan (``RemovalPreview``, in the background).
``previewed`` fires after each preview, for what else follows the settings (the planned bars,
the sweep's prediction, whether the shown result is out of date).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QWidget

from core.errors import RecipeError, UserError
from core.plan import select_layers
from core.quantization import describe, plan_quantization, select_rules
from core.recipe import Quantize, Recipe, dump_recipe, load_recipe
from gui import prefs
from gui.feedback import Feedback
from gui.layer_tree_model import LayerTreeModel
from gui.recipe_state import PruneSettings, WindowState, build_recipe, state_from_recipe
from gui.removal_preview import RemovalPreview
from gui.session import Session
from gui.settings_panel import SettingsPanel

RECIPE_FILTER = "Recipes (*.yaml *.yml *.json);;All files (*)"
PREVIEW_DELAY_MS = 120


class RecipeEditor(QObject):
    """Widgets <-> recipe for the window (``parent`` hosts the file dialogs)."""

    previewed = Signal()

    def __init__(
        self,
        session: Session,
        settings: SettingsPanel,
        tree_model: LayerTreeModel,
        feedback: Feedback,
        parent: QWidget,
        removal: RemovalPreview | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.tree_model = tree_model
        self.feedback = feedback
        self.removal = removal
        self._parent = parent
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PREVIEW_DELAY_MS)
        self._timer.timeout.connect(self.update_preview)
        settings.changed.connect(self._on_settings_changed)
        tree_model.checksChanged.connect(self._timer.start)
        tree_model.amountsChanged.connect(self._timer.start)
        tree_model.schemesChanged.connect(self._timer.start)
        session.evalDataChanged.connect(self._on_data_changed)

    # ------------------------------------------------------------------ reading
    def state(self) -> WindowState:
        """What the tree and the settings show, as plain data."""
        selection = self.session.selection
        return WindowState(
            checked=selection.checked_names(),
            overrides=selection.overrides(),
            prune=self.settings.prune_settings(),
            finetune=self.settings.finetune(),
            quantize=self.settings.quantize(),
            schemes=selection.schemes(),
        )

    def current(self) -> Recipe:
        """The one recipe the window shows; RecipeError names a bad setting."""
        if self.session.loaded is None:
            raise RecipeError("no model is open")
        return build_recipe(self.session.loaded.model, self.session.layers, self.state())

    # ------------------------------------------------------------------ setting
    def apply_defaults(self) -> None:
        """A new model starts neutral: nothing checked, no quantization, so Compress does
        nothing until the user asks (the Check menu, a recipe, the sensitivity slider)."""
        self.settings.set_prune_settings(PruneSettings())
        self.settings.set_finetune(None)
        self.settings.set_quantize(None)
        selection = self.session.selection
        selection.set_default_amount(0.5, False)
        selection.set_checked_names([])
        selection.set_overrides({})
        selection.set_schemes({})

    def apply(self, recipe: Recipe, quiet: bool = False) -> None:
        """Set the tree and the settings from ``recipe``; what the window cannot show is
        logged (and, unless ``quiet``, told). RecipeError when a pattern matches nothing."""
        assert self.session.loaded is not None
        state, warnings = state_from_recipe(self.session.loaded.model, recipe)
        selection = self.session.selection
        self.settings.set_prune_settings(state.prune)
        self.settings.set_finetune(state.finetune)
        self.settings.set_quantize(state.quantize)
        selection.set_default_amount(state.prune.amount, state.prune.is_global)
        refused = selection.set_checked_names(state.checked)
        selection.set_overrides(state.overrides)
        selection.set_schemes(state.schemes)
        if refused:
            warnings.append(
                f"{recipe.source}: selects layers the tree cannot check (already quantized "
                f"or without float weights): {', '.join(refused[:5])}"
            )
        if not quiet:
            own = f", {len(state.schemes)} with their own scheme" if state.schemes else ""
            self.feedback.log(f"recipe {recipe.source}: {len(state.checked)} layers to prune{own}")
        for warning in warnings:
            self.feedback.log(f"warning: {warning}")
            if not quiet:
                self.feedback.inform(warning)

    def apply_or_report(self, recipe: Recipe) -> bool:
        """``apply``; False (after a message) if it fails."""
        try:
            self.apply(recipe)
        except UserError as exc:
            self.feedback.error(exc)
            return False
        return True

    # ------------------------------------------------------------------ files
    def load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self._parent, "Load Recipe", prefs.last_folder("recipe"), RECIPE_FILTER
        )
        if path:
            prefs.set_last_folder("recipe", Path(path))
            self.load_file(Path(path))

    def load_file(self, path: Path) -> bool:
        """Set the widgets from a recipe file; False (after a message) if it fails."""
        try:
            recipe = load_recipe(path)
        except UserError as exc:
            self.feedback.error(exc)
            return False
        return self.apply_or_report(recipe)

    def save_dialog(self) -> None:
        """Write what the window shows as a recipe file for 'secateur compress'."""
        try:
            recipe = self.current()
        except UserError as exc:
            self.feedback.error(exc)
            return
        start = str(Path(prefs.last_folder("recipe")) / "recipe.yaml")
        path, _ = QFileDialog.getSaveFileName(self._parent, "Save Recipe", start, RECIPE_FILTER)
        if not path:
            return
        target = Path(path)
        if target.suffix.lower() not in (".yaml", ".yml", ".json"):
            target = target.with_name(target.name + ".yaml")
        prefs.set_last_folder("recipe", target)
        try:
            dump_recipe(recipe, target)
        except UserError as exc:
            self.feedback.error(exc)
            return
        prefs.set_saved_folder(target)
        self.feedback.log(f"saved recipe {target}")
        self.feedback.status(f"Saved recipe {target.name}: run it with secateur compress --recipe")

    # ------------------------------------------------------------------ preview
    @Slot()
    def _on_settings_changed(self) -> None:
        prune = self.settings.prune_settings()
        self.session.selection.set_default_amount(prune.amount, prune.is_global)
        self._timer.start()

    @Slot()
    def _on_data_changed(self) -> None:
        if self.removal is not None:
            self.removal.invalidate()  # the plan is traced on the evaluation data
        self._timer.start()

    def _request_removal(self) -> None:
        """Ask for the removal plan of the checked layers when channels are to be removed."""
        if self.removal is None or self.session.loaded is None:
            return
        prune = self.settings.prune_settings()
        selection = self.session.selection
        recipe, shape = None, None
        if prune.removes and selection.checked_names():
            state = WindowState(selection.checked_names(), selection.overrides(), prune)
            try:
                recipe = build_recipe(self.session.loaded.model, self.session.layers, state)
                shape = self.settings.input_shape()
            except UserError:
                shape = None  # a bad input shape: the evaluation data, or no input at all
        self.removal.request(recipe, shape)

    @Slot()
    def update_preview(self) -> None:
        """Which layers the quantize settings select, and a one-line recipe summary."""
        loaded = self.session.loaded
        if loaded is None:
            self.settings.set_recipe_summary("")
            return
        self._request_removal()
        done, _, params = self.session.selection.checked_summary()
        parts = []
        if done:
            parts.append(f"prune <b>{done}</b> layer{'s' * (done != 1)} ({params:,} weights)")
        planned: list[str] = []
        label = None
        own = len(self.session.selection.schemes())
        try:
            quantize = self.settings.quantize()
            if quantize is not None:
                planned, skipped = self._selected(loaded.model, quantize)
                label = describe(quantize) if not quantize.keeps_float else None
        except UserError as exc:
            self.settings.set_quant_preview(str(exc).split(": ", 1)[-1], error=True)
        else:
            if quantize is not None:
                names = ", ".join(planned[:4]) + (" \u2026" if len(planned) > 4 else "")
                verb = "Keeps float" if quantize.keeps_float else "Selects"
                text = f"{verb} {len(planned)} layer{'s' * (len(planned) != 1)}: {names}"
                if skipped:
                    text += f" ({skipped} skipped: cannot be quantized)"
                if own:
                    text += f"; {own} with their own scheme in the Quant column"
                self.settings.set_quant_preview(text)
                if planned and not quantize.keeps_float:
                    parts.append(f"quantize <b>{len(planned)}</b> ({quantize.scheme})")
            elif not self.settings.quantize_enabled():
                self.settings.set_quant_preview(
                    f"{own} layers have their own scheme in the Quant column" if own else ""
                )
        if own:
            parts.append(f"<b>{own}</b> per-layer scheme{'s' * (own != 1)}")
        self.tree_model.set_planned_quantization(planned, label)
        if self.settings.finetune() is not None:
            parts.append("fine-tune")
        if not loaded.eager:
            self.settings.set_recipe_summary(loaded.not_eager_reason or "")
            return
        summary = (
            "Recipe: " + ", ".join(parts)
            if parts
            else "Nothing to do: check layers or turn on quantization"
        )
        self.settings.set_recipe_summary(summary)
        self.previewed.emit()

    @staticmethod
    def _selected(model: object, quantize: Quantize) -> tuple[list[str], int]:
        """The layers the panel's rule selects (and how many cannot take its scheme)."""
        if quantize.is_auto:
            return select_layers(model, quantize, "settings"), 0  # type: ignore[arg-type]
        if quantize.keeps_float:
            return list(select_rules(model, [quantize], "settings")), 0  # type: ignore[arg-type]
        plan = plan_quantization(model, [quantize], "settings")  # type: ignore[arg-type]
        return list(plan.layers), len(plan.skipped)
