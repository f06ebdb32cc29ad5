"""The recipe: one versioned, validated object that describes a compression.

The window builds one from its widgets, the command line reads one from YAML or JSON, and
both hand it to the same engine. Validation errors name the field and the bad value, e.g.
``recipe.yaml: prune[0].amount: 1.5 is not in [0, 1)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.atomic import atomic_write_bytes
from core.errors import RecipeError
from core.methods import CHANNEL_SCOPES, IMPORTANCES, PRUNE_METHODS
from core.schemes import BACKENDS, CANDIDATES, DEFAULT_BACKEND, GRANULARITIES, KEEP_FLOAT, SCHEMES

RECIPE_VERSION = 1

# The recipe's choices are the registries' names (core.methods, core.schemes).
PruneMethod = Literal[PRUNE_METHODS.names()]  # type: ignore[valid-type]
# Besides the schemes, a quantize rule may say "float" (leave these layers alone: a later
# rule overrides an earlier one) or "auto" (measure and plan every selected layer).
AUTO = "auto"
QuantScheme = Literal[(*SCHEMES.names(), KEEP_FLOAT, AUTO)]  # type: ignore[valid-type]
Backend = Literal[BACKENDS.names()]  # type: ignore[valid-type]
Granularity = Literal[tuple(name for name, _ in GRANULARITIES)]  # type: ignore[valid-type]
NORM_NAMES = ("inf", "-inf", "fro", "nuc")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_patterns(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("must list at least one pattern")
    for item in value:
        if not item.strip():
            raise ValueError(f"{item!r} is an empty pattern")
    return value


class PruneRule(_Strict):
    """One pruning rule: which layers, which method, how much. Later rules override earlier."""

    layers: list[str] = Field(default_factory=lambda: ["*"])
    types: list[str] | None = None
    method: PruneMethod = "l1_unstructured"
    amount: int | float = 0.5
    n: int | float | str = 2
    dim: int = 0
    permanent: bool = True
    # method: remove_channels only (defaults: importance l2, scope layer, round_to 1)
    importance: Literal[IMPORTANCES] | None = None  # type: ignore[valid-type]
    scope: Literal[CHANNEL_SCOPES] | None = None  # type: ignore[valid-type]
    round_to: int | None = Field(default=None, ge=1, le=1 << 20)

    @model_validator(mode="after")
    def _channel_options(self) -> PruneRule:
        method = PRUNE_METHODS[self.method]
        for name in ("importance", "scope", "round_to"):
            if getattr(self, name) is not None and name not in method.options:
                raise ValueError(f"{name} is for method: remove_channels only, not {self.method!r}")
        return self

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: list[str]) -> list[str]:
        return _check_patterns(value)

    @field_validator("types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_patterns(value)

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{value!r} is not a number (a fraction in [0, 1) or a count)")
        if isinstance(value, float):
            if math.isnan(value) or not 0.0 <= value < 1.0:
                raise ValueError(
                    f"{value} is not in [0, 1) (write a whole number for a count of elements)"
                )
            return value
        if value < 0:
            raise ValueError(f"{value} is negative (a count must be >= 0)")
        return value

    @field_validator("n", mode="before")
    @classmethod
    def _n(cls, value: Any) -> int | float | str:
        if isinstance(value, str):
            if value not in NORM_NAMES:
                raise ValueError(f"{value!r} is not a norm (use 1, 2, ... or one of {NORM_NAMES})")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{value!r} is not a positive norm order")
        return value

    def norm(self) -> int | float | str:
        """The ``n`` argument as torch.nn.utils.prune.ln_structured takes it."""
        if self.n in ("inf", "-inf"):
            return float(self.n)
        return self.n


class Finetune(_Strict):
    """Recovery training after pruning, with the pruning masks held."""

    epochs: int = Field(default=3, ge=1, le=10_000)
    lr: float = Field(default=1e-3, gt=0, le=10)
    batch_size: int = Field(default=64, ge=1)
    loss: Literal["auto", "cross_entropy", "distillation"] = "auto"


class Quantize(_Strict):
    """One quantization rule: which layers, which scheme (after pruning and fine-tuning).

    Rules apply in order and a later rule that selects a layer overrides an earlier one, as
    for pruning. ``scheme: float`` keeps the selected layers float; ``scheme: auto`` measures
    the candidates of every selected layer on this machine and picks the fastest plan whose
    measured drop stays within ``max_drop`` (the other auto-only fields tune that search).
    """

    scheme: QuantScheme = "int8_dynamic"
    backend: Backend = DEFAULT_BACKEND
    granularity: Granularity = "per_channel"
    layers: list[str] = Field(default_factory=lambda: ["*"])
    types: list[str] | None = Field(default_factory=lambda: ["Linear"])  # null: any with weights
    # scheme: auto only
    max_drop: float | None = None
    metric: Literal["auto", "accuracy", "cosine_similarity"] | None = None
    candidates: list[str] | None = None
    threads: int | None = Field(default=None, ge=1, le=1024)
    batch_size: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("layers", "types")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_patterns(value)

    @field_validator("max_drop")
    @classmethod
    def _max_drop(cls, value: float | None) -> float | None:
        if value is not None and (math.isnan(value) or not 0.0 <= value <= 1.0):
            raise ValueError(f"{value} is not in [0, 1]")
        return value

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must list at least one candidate")
        for name in value:
            if name not in CANDIDATES:
                raise ValueError(f"{name!r} is not one of {CANDIDATES.choices()}")
        return value

    @model_validator(mode="after")
    def _backend_scheme(self) -> Quantize:
        auto_only = ("max_drop", "metric", "candidates", "threads", "batch_size")
        if self.scheme != AUTO:
            for name in auto_only:
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is for scheme: auto only, not {self.scheme!r}")
        if self.scheme in (AUTO, KEEP_FLOAT):
            return self
        scheme = SCHEMES[self.scheme]
        if self.backend in scheme.backends or (scheme.is_cast and self.backend == DEFAULT_BACKEND):
            return self  # a cast has no backend: the default one is ignored
        runs = [s.name for s in SCHEMES if self.backend in s.backends]
        raise ValueError(
            f"backend {self.backend!r} ({BACKENDS[self.backend].library}) supports "
            f"{', '.join(runs)} only, not {self.scheme!r}"
        )

    @property
    def is_auto(self) -> bool:
        return self.scheme == AUTO

    @property
    def keeps_float(self) -> bool:
        return self.scheme == KEEP_FLOAT


class Recipe(_Strict):
    """A whole compression: pruning rules, an optional fine-tune, optional quantization."""

    version: Literal[1]
    prune: list[PruneRule] = Field(default_factory=list)
    finetune: Finetune | None = None
    quantize: list[Quantize] = Field(default_factory=list)

    _source: str = PrivateAttr(default="recipe")

    @property
    def source(self) -> str:
        """Where the recipe came from (a file name or 'recipe'), for error messages."""
        return self._source

    def with_source(self, source: str) -> Recipe:
        self._source = source
        return self

    def __eq__(self, other: object) -> bool:
        # Where a recipe came from is not part of what it says.
        if not isinstance(other, Recipe):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @field_validator("quantize", mode="before")
    @classmethod
    def _quantize_rules(cls, value: Any) -> Any:
        """One mapping (recipe version 1) is a list of one rule."""
        if value is None:
            return []
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _auto_alone(self) -> Recipe:
        if len(self.quantize) > 1 and any(q.is_auto for q in self.quantize):
            raise ValueError(
                "quantize: scheme auto plans every selected layer; give it alone (one mapping), "
                "not among other rules"
            )
        return self

    @property
    def auto_quantize(self) -> Quantize | None:
        """The ``scheme: auto`` rule, when the recipe asks for a measured plan."""
        return self.quantize[0] if len(self.quantize) == 1 and self.quantize[0].is_auto else None

    def is_empty(self) -> bool:
        return not self.prune and not any(not q.keeps_float for q in self.quantize)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-safe dict that ``Recipe.from_dict`` turns back into an equal recipe.
        One quantize rule is written as a mapping (as version 1 files have it)."""
        data = self.model_dump(mode="json", exclude_none=True)
        # A pruning rule's fields its method does not read are left out (n and dim belong
        # to the structured methods), and so is permanent when it is the default.
        for rule, dumped in zip(self.prune, data.get("prune", [])):
            options = PRUNE_METHODS[rule.method].options
            for name in ("n", "dim"):
                if name not in options:
                    dumped.pop(name, None)
            if rule.permanent:
                dumped.pop("permanent", None)
        rules = data.pop("quantize", [])
        for rule, dumped in zip(self.quantize, rules):
            if rule.types is None:  # null means any layer with weights; absent means Linear
                dumped["types"] = None
        if rules:
            data["quantize"] = rules[0] if len(rules) == 1 else rules
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "recipe") -> Recipe:
        if data is None:
            raise RecipeError(f"{source}: the recipe is empty (it needs at least 'version: 1')")
        if not isinstance(data, dict):
            raise RecipeError(
                f"{source}: expected a mapping with 'version: 1' at the top, "
                f"got {type(data).__name__}"
            )
        try:
            return cls.model_validate(data).with_source(source)
        except ValidationError as exc:
            message = format_validation_error(exc)
            if isinstance(data.get("quantize"), dict):  # one mapping: no rule index to show
                message = message.replace("quantize[0]", "quantize", 1)
            raise RecipeError(f"{source}: {message}") from None


def _loc(loc: tuple[Any, ...], root: str) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in PRUNE_METHODS or part in ("int", "float", "str", "function-after"):
            continue  # pydantic's union-branch labels are noise to the user
        elif isinstance(part, str) and "[" in part:
            continue  # a union branch named by its type, e.g. "dict[str,_RuleFields]"
        else:
            out += f".{part}" if out else str(part)
    return out or root


def format_validation_error(exc: ValidationError, root: str = "recipe") -> str:
    """The first pydantic error as ``field: bad value ...`` in one line (``root`` names the
    whole document when the error is about it; empty: the message alone)."""
    err = exc.errors(include_url=False)[0]
    where = _loc(tuple(err["loc"]), root)
    kind = err["type"]
    if kind == "value_error":
        message = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        return f"{where}: {message}" if where else message
    if kind == "missing":
        return f"{where}: missing (required)"
    if kind == "extra_forbidden":
        return f"{where}: unknown key"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{where}: {err['input']!r} is not one of {expected}"
    return f"{where}: {err['input']!r} is invalid ({err['msg'].lower()})"


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a YAML or JSON recipe file."""
    path = Path(path)
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a folder, not a recipe file") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{name}: not a text file (expected YAML or JSON)") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot be read ({exc.strerror})") from None
    return parse_recipe(text, name, json_only=path.suffix.lower() == ".json")


def parse_recipe(text: str, source: str = "recipe", json_only: bool = False) -> Recipe:
    """Validate recipe text (YAML, of which JSON is a subset)."""
    if not text.strip():
        raise RecipeError(f"{source}: the file is empty (a recipe needs at least 'version: 1')")
    try:
        data = json.loads(text) if json_only else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise RecipeError(
            f"{source}: JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RecipeError(f"{source}: YAML syntax error{where}: {problem}") from None
    return Recipe.from_dict(data, source)


def dump_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write a recipe as YAML (or JSON for a .json path), atomically."""
    path = Path(path)
    data = recipe.to_dict()
    if path.suffix.lower() == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False)
    atomic_write_bytes(path, text.encode("utf-8"))
