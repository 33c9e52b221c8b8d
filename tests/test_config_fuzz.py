"""Property-based fuzzing of recipes and --set values: whatever the user writes, the result is a valid Config
or one line of ConfigError naming what is wrong, never a traceback."""

import dataclasses
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smallgan.config import SECTIONS, Config, ConfigError, load_config, validate

KEYS = [f"{s}.{f.name}" for s in SECTIONS for f in dataclasses.fields(getattr(Config(), s))]

# Values near the edges of what each field accepts, of every TOML type, and text that is not TOML at all.
NUMBERS = st.one_of(st.integers(-3, 3), st.sampled_from([0, 1, 2, 7, 16, 64, 256, 10**9, -(10**9)]),
                    st.floats(allow_nan=True, allow_infinity=True, width=32))
SCALARS = st.one_of(NUMBERS, st.booleans(), st.sampled_from(["", "auto", "hinge", "bf16", "rollback", "x"]),
                    st.text(max_size=12))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))


def _literal(value) -> str:
    """How a user would write `value` after --set key= (TOML literals; text as is, or quoted)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan")
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) if not isinstance(v, str) else repr(v) for v in value) + "]"
    return str(value)


def _one_line_or_valid(build) -> None:
    try:
        cfg = build()
    except ConfigError as e:
        message = str(e)
        assert message and "\n" not in message, message
        return
    validate(cfg)                                  # what came back is valid as it stands


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), st.text(max_size=16)), VALUES, st.booleans()),
                min_size=1, max_size=4))
def test_set_values_give_a_config_or_one_line(overrides):
    items = [f"{key}={_literal(value)}" if plain else f"{key}={value!r}" for key, value, plain in overrides]
    _one_line_or_valid(lambda: load_config("tiny-cpu", items))


def _toml(value) -> str:
    """A TOML literal of `value` (tomllib reads TOML; nothing here writes it)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)       # numbers, and strings as TOML basic strings


def _recipe_text(recipe: dict) -> str:
    top = [f"{json.dumps(k)} = {_toml(v)}" for k, v in recipe.items() if not isinstance(v, dict)]
    tables = [f"[{json.dumps(k)}]\n" + "".join(f"{json.dumps(f)} = {_toml(v)}\n" for f, v in v.items())
              for k, v in recipe.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "".join(tables)


@FUZZ
@given(st.dictionaries(st.one_of(st.sampled_from(SECTIONS), st.text(min_size=1, max_size=8)),
                       st.one_of(st.dictionaries(st.one_of(st.sampled_from([k.split(".")[1] for k in KEYS]),
                                                           st.text(min_size=1, max_size=8)),
                                                 VALUES, max_size=4),
                                 SCALARS),
                       max_size=3),
       st.binary(max_size=40), st.booleans())
def test_recipes_give_a_config_or_one_line(tmp_path, recipe, garbage, corrupt):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(_recipe_text(recipe).encode("utf-8", "surrogatepass") + (garbage if corrupt else b""))
    _one_line_or_valid(lambda: load_config(str(path)))
