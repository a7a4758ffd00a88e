"""The one sampling-parameter spec.

Every place that speaks of a sampling parameter (validation, CLI flags, the side
panel, presets, help text, ``GenerationConfig``) reads the entries in ``PARAMS``.
Adding a parameter is one entry here.  Imports neither torch nor Textual.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from transformers import GenerationConfig

_TRUE = {"true", "on", "yes", "1", "y", "t"}
_FALSE = {"false", "off", "no", "0", "n", "f"}


class ParamError(ValueError):
    """A value that the spec rejects; ``str()`` is the message to show the user."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class ParamsError(ValueError):
    """Several rejected values at once (one message per parameter)."""

    def __init__(self, errors: list[ParamError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class ParamSpec:
    """One sampling parameter: type, default, allowed range, help and the tutorial's advice."""

    name: str
    kind: type  # bool, int or float
    default: Any
    help_en: str
    advice_en: str
    help_zh: str
    advice_zh: str
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    optional: bool = False  # an empty entry means None
    empty_means: str = "none"  # what an empty entry does, for messages
    step: float = 1
    sampling_only: bool = False  # ignored by greedy decoding
    neutral: Any = None  # the value at which the stage does nothing
    advanced: bool = False
    label: str = ""
    generation_field: str | None = field(default=None)

    @property
    def flag(self) -> str:
        """The CLI flag, e.g. ``--top-k``."""
        return "--" + self.name.replace("_", "-")

    @property
    def title(self) -> str:
        """The name the panel shows, e.g. ``Top-k``."""
        return self.label or self.name

    def range_text(self) -> str:
        """Human text of the allowed range, e.g. ``> 0 and ≤ 5``."""
        if self.kind is bool:
            return "on or off"
        low = _fmt(self.minimum)
        high = _fmt(self.maximum)
        op = ">" if self.min_exclusive else "≥"
        return f"{op} {low} and ≤ {high}"

    def _reject(self, raw: Any) -> ParamError:
        if self.kind is bool:
            what = "on or off (true/false)"
        else:
            noun = "a whole number" if self.kind is int else "a number"
            what = f"{noun} {self.range_text()}"
            if self.optional:
                what += f", or empty for {self.empty_means}"
        return ParamError(self.name, f"{self.name} must be {what}, got {raw!r}")

    def parse(self, raw: Any) -> Any:
        """Turn user input (text or a Python value) into a valid value, or raise ParamError."""
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            if self.optional:
                return None
            raise self._reject("" if raw is None else raw)
        if self.kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise self._reject(raw)
        if isinstance(raw, bool):
            raise self._reject(raw)
        try:
            if isinstance(raw, str):
                number = float(raw.strip().replace("_", ""))
            else:
                number = float(raw)
        except (TypeError, ValueError):
            raise self._reject(raw) from None
        if not math.isfinite(number):
            raise self._reject(raw)
        if self.kind is int:
            if number != int(number):
                raise self._reject(raw)
            value: Any = int(number)
        else:
            value = number
        if self.minimum is not None:
            if value < self.minimum or (self.min_exclusive and value == self.minimum):
                raise self._reject(raw)
        if self.maximum is not None and value > self.maximum:
            raise self._reject(raw)
        return value

    def format(self, value: Any) -> str:
        """The text shown in an input for ``value``."""
        if value is None:
            return ""
        if self.kind is bool:
            return "on" if value else "off"
        return _fmt(value)

    def nudge(self, value: Any, direction: int) -> Any:
        """``value`` moved one step up (+1) or down (-1), clamped to the range."""
        if self.kind is bool:
            return not value
        base = value if value is not None else (self.minimum or 0)
        moved = round(base + direction * self.step, 6)
        if self.kind is int:
            moved = int(moved)
        if self.maximum is not None:
            moved = min(moved, self.maximum)
        if self.minimum is not None and (
            moved < self.minimum or (self.min_exclusive and moved <= self.minimum)
        ):
            moved = base  # the step would leave the range: stay put
        return self.parse(moved)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        name="do_sample",
        kind=bool,
        default=True,
        label="Sample",
        help_en="Sample the next token at random from the probability table; off = greedy "
        "decoding, always the most likely token.",
        advice_en="With greedy decoding (off), set no other sampling parameter, or results "
        "become unstable.",
        help_zh="控制是否使用隨機取樣。True：為隨機取樣。False：為 Greedy Decode，只取機率最高的 Token。",
        advice_zh="使用 Greedy Decode 時（False），建議不要設定其他取樣參數，以免結果不穩定。",
        generation_field="do_sample",
    ),
    ParamSpec(
        name="temperature",
        kind=float,
        default=0.75,
        minimum=0,
        maximum=5,
        min_exclusive=True,
        step=0.05,
        sampling_only=True,
        neutral=1.0,
        label="Temperature",
        help_en="Reshapes the probability table: higher brings first and last place closer "
        "together, yet keeps their order.",
        advice_en="Higher (1.0 and up) is more creative; lower (such as 0.1) is more rigorous.",
        help_zh="調整機率分布的平滑度，改變 token 的出現機率。改造機率表，temperature 越大時，"
        "第一名跟最後一名的距離就會越近，但彼此之間的相對關係還是保持不變。",
        advice_zh="數值越高（如 1.0 以上），輸出更有創意；越低（如 0.1）輸出更嚴謹。",
        generation_field="temperature",
    ),
    ParamSpec(
        name="top_k",
        kind=int,
        default=50,
        minimum=0,
        maximum=1000,
        step=5,
        sampling_only=True,
        neutral=0,
        label="Top-k",
        help_en="Sample only from the K most likely tokens (0 = no limit).",
        advice_en="Smaller K gives steadier output; larger K gives more varied output.",
        help_zh="從機率最高的前 K 個 token 中取樣（0 表示不限制）。",
        advice_zh="K 值越小，輸出越穩定；越大則輸出越多樣。",
        generation_field="top_k",
    ),
    ParamSpec(
        name="top_p",
        kind=float,
        default=0.95,
        minimum=0,
        maximum=1,
        min_exclusive=True,
        step=0.05,
        sampling_only=True,
        neutral=1.0,
        label="Top-p",
        help_en="Nucleus sampling: add up probabilities until the total passes top_p, then "
        "sample from those tokens (1 = off).",
        advice_en="Flexible: the range follows the actual distribution; a common value is 0.9.",
        help_zh="累加機率直到總和超過 top_p，然後從這些 token 中取樣（又稱 nucleus sampling）。",
        advice_zh="彈性高，會根據實際機率分布自動決定取樣範圍；常用值如 0.9。",
        generation_field="top_p",
    ),
    ParamSpec(
        name="repetition_penalty",
        kind=float,
        default=1.1,
        minimum=0,
        maximum=5,
        min_exclusive=True,
        step=0.05,
        neutral=1.0,
        label="Rep. penalty",
        help_en="Penalises tokens already in the text, making repeated content less likely "
        "(1 = off).",
        advice_en="> 1.0 curbs repetition, < 1.0 makes it likelier. Raise it when the model loops.",
        help_zh="懲罰重複的輸出，降低重複內容的生成可能性。",
        advice_zh="> 1.0 抑制重複，< 1.0 容易重複。跳針情況下建議調高此參數。",
        generation_field="repetition_penalty",
    ),
    ParamSpec(
        name="max_new_tokens",
        kind=int,
        default=256,
        minimum=1,
        maximum=8192,
        step=16,
        label="Max tokens",
        help_en="The most tokens one reply may have; the reply stops there (finish: length).",
        advice_en="The tutorial's demo uses 16 to keep the example short; chat wants a few "
        "hundred.",
        help_zh="一次回覆最多生成的 token 數，到達上限即停止。",
        advice_zh="教學範例用 16 讓輸出簡短；聊天時建議設定數百。",
        generation_field="max_new_tokens",
    ),
    ParamSpec(
        name="min_p",
        kind=float,
        default=0.0,
        minimum=0,
        maximum=1,
        step=0.01,
        sampling_only=True,
        neutral=0.0,
        advanced=True,
        label="Min-p",
        help_en="Drops tokens whose probability is below min_p times the top token's (0 = off).",
        advice_en="Scales with the model's confidence; 0.05–0.1 is a common choice, often "
        "with top_p 1.",
        help_zh="捨棄機率低於「最高機率 × min_p」的 token（0 表示關閉）。",
        advice_zh="會隨模型的信心自動調整；常用 0.05–0.1，通常搭配 top_p = 1。",
        generation_field="min_p",
    ),
    ParamSpec(
        name="typical_p",
        kind=float,
        default=1.0,
        minimum=0,
        maximum=1,
        min_exclusive=True,
        step=0.05,
        sampling_only=True,
        neutral=1.0,
        advanced=True,
        label="Typical-p",
        help_en="Locally typical sampling: keep the tokens closest to the expected "
        "information content until their mass reaches typical_p (1 = off).",
        advice_en="Try 0.9–0.95 to cut both dull and wild tokens.",
        help_zh="典型取樣：保留資訊量最接近期望值的 token，直到累積機率達到 typical_p（1 表示關閉）。",
        advice_zh="可試 0.9–0.95，同時去除過於平淡與過於離譜的 token。",
        generation_field="typical_p",
    ),
    ParamSpec(
        name="no_repeat_ngram_size",
        kind=int,
        default=0,
        minimum=0,
        maximum=20,
        step=1,
        neutral=0,
        advanced=True,
        label="No-repeat n",
        help_en="Forbids any n-gram of this size from appearing twice (0 = off).",
        advice_en="3 or 4 stops loops outright, but also blocks legitimate repeats (names, code).",
        help_zh="禁止任何長度為 n 的詞組重複出現（0 表示關閉）。",
        advice_zh="設為 3 或 4 可直接阻止跳針，但也會擋掉合理的重複（名稱、程式碼）。",
        generation_field="no_repeat_ngram_size",
    ),
    ParamSpec(
        name="seed",
        kind=int,
        default=None,
        minimum=0,
        maximum=2**32 - 1,
        optional=True,
        empty_means="random",
        step=1,
        advanced=True,
        label="Seed",
        help_en="Seeds the random sampler so the same prompt and values give the same reply "
        "(empty = random).",
        advice_en="Set it to compare parameter changes fairly; it has no effect on greedy "
        "decoding.",
        help_zh="設定隨機種子，讓相同的提示與參數得到相同的回覆（留空表示隨機）。",
        advice_zh="比較不同參數時建議固定種子；Greedy Decode 不受影響。",
    ),
)

SPEC: dict[str, ParamSpec] = {p.name: p for p in PARAMS}
SAMPLING_ONLY: tuple[str, ...] = tuple(p.name for p in PARAMS if p.sampling_only)


@dataclass(frozen=True)
class Advice:
    """A combination the tutorial warns about: which parameters, and what to tell the user."""

    params: tuple[str, ...]
    message: str
    ignored: bool = False  # the named parameters have no effect at all


@dataclass(frozen=True, slots=True, init=False)
class SamplingParams:
    """A complete, valid set of sampling values (immutable).

    One typed attribute per ``PARAMS`` entry, in the same order, so the type checker
    knows each value; ``tests/test_params.py`` checks the two agree.
    """

    do_sample: bool
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    max_new_tokens: int
    min_p: float
    typical_p: float
    no_repeat_ngram_size: int
    seed: int | None

    def __init__(self, **values: Any) -> None:
        """Validate ``values`` (text or Python values) against the spec; a name left out
        takes its default. Every rejected value is reported at once in ParamsError."""
        unknown = set(values) - set(SPEC)
        if unknown:
            raise ParamsError([ParamError(n, f"unknown parameter {n!r}") for n in sorted(unknown)])
        errors: list[ParamError] = []
        for spec in PARAMS:
            try:
                object.__setattr__(self, spec.name, spec.parse(values.get(spec.name, spec.default)))
            except ParamError as exc:
                errors.append(exc)
        if errors:
            raise ParamsError(errors)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SamplingParams:
        """Build from a mapping such as a preset; unknown keys are an error."""
        return cls(**dict(values))

    def replace(self, **changes: Any) -> SamplingParams:
        """A copy with some values changed (validated)."""
        return SamplingParams(**{**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Every value by parameter name, in the spec's order."""
        return {spec.name: getattr(self, spec.name) for spec in PARAMS}

    # -- meaning --------------------------------------------------------------------------
    def ignored(self) -> set[str]:
        """Parameters that have no effect under the current values."""
        names: set[str] = set()
        if not self.do_sample:
            names.update(SAMPLING_ONLY)
            names.add("seed")
        return names

    def advice(self) -> list[Advice]:
        """Combinations the tutorial warns about, reported rather than silently dropped."""
        out: list[Advice] = []
        if not self.do_sample:
            set_ones = [n for n in SAMPLING_ONLY if getattr(self, n) != SPEC[n].neutral]
            if set_ones:
                out.append(
                    Advice(
                        tuple(set_ones),
                        "do_sample is off (greedy decoding), so "
                        + ", ".join(set_ones)
                        + " are ignored; the tutorial advises setting no other sampling "
                        "parameter with greedy decoding.",
                        ignored=True,
                    )
                )
            if self.seed is not None:
                out.append(
                    Advice(("seed",), "seed has no effect with greedy decoding.", ignored=True)
                )
            still = [
                n
                for n in ("repetition_penalty", "no_repeat_ngram_size")
                if getattr(self, n) != SPEC[n].neutral
            ]
            if still:
                out.append(
                    Advice(
                        tuple(still),
                        ", ".join(still)
                        + (" still apply" if len(still) > 1 else " still applies")
                        + " under greedy decoding; the tutorial advises setting no other "
                        "sampling parameter for stable results.",
                    )
                )
        else:
            if self.top_k == 1:
                out.append(
                    Advice(
                        ("top_k",),
                        "top_k 1 keeps only the most likely token, so sampling behaves like "
                        "greedy decoding.",
                    )
                )
            if self.temperature > 1.5:
                out.append(
                    Advice(
                        ("temperature",),
                        f"temperature {_fmt(self.temperature)} is very random; the tutorial warns "
                        "that too much randomness can hurt the answer's correctness.",
                    )
                )
        if self.repetition_penalty < 1.0:
            out.append(
                Advice(
                    ("repetition_penalty",),
                    "repetition_penalty below 1.0 makes repetition more likely.",
                )
            )
        return out

    def generation_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``GenerationConfig``; ignored values are left out."""
        skipped = self.ignored()
        kwargs: dict[str, Any] = {}
        for spec in PARAMS:
            if spec.generation_field is None or spec.name in skipped:
                continue
            value = getattr(self, spec.name)
            if spec.name == "min_p" and value == 0:
                value = None  # 0 means off; no processor
            kwargs[spec.generation_field] = value
        return kwargs

    def to_generation_config(self, **extra: Any) -> GenerationConfig:
        """A ``transformers.GenerationConfig`` for these values (``extra``: eos/pad ids)."""
        from transformers import GenerationConfig

        return GenerationConfig(**self.generation_kwargs(), **extra)

    def difference(self, base: SamplingParams) -> str:
        """How these values differ from ``base``, in ``summary``'s words (``T 1.2 · top-p
        0.5``); empty when they are the same. A compare column's header."""
        mine, theirs = self.summary().split(" · "), set(base.summary().split(" · "))
        parts = [part for part in mine if part not in theirs]
        for spec in PARAMS:  # values summary() leaves out (a filter while greedy, …)
            if spec.name != "do_sample" and getattr(self, spec.name) != getattr(base, spec.name):
                if not any(p.startswith(_SHORT.get(spec.name, spec.name)) for p in parts):
                    parts.append(
                        f"{_SHORT.get(spec.name, spec.name)} {spec.format(getattr(self, spec.name))}"
                    )
        return " · ".join(parts)

    def summary(self) -> str:
        """Short text of the values in effect, e.g. ``T 0.75 · top-k 50 · top-p 0.95 · rep 1.1``."""
        if not self.do_sample:
            parts = ["greedy"]
        else:
            parts = [f"T {_fmt(self.temperature)}"]
            if self.top_k:
                parts.append(f"top-k {self.top_k}")
            if self.top_p < 1:
                parts.append(f"top-p {_fmt(self.top_p)}")
            if self.min_p:
                parts.append(f"min-p {_fmt(self.min_p)}")
            if self.typical_p < 1:
                parts.append(f"typical-p {_fmt(self.typical_p)}")
        if self.repetition_penalty != 1:
            parts.append(f"rep {_fmt(self.repetition_penalty)}")
        if self.no_repeat_ngram_size:
            parts.append(f"no-repeat {self.no_repeat_ngram_size}")
        if self.do_sample and self.seed is not None:
            parts.append(f"seed {self.seed}")
        parts.append(f"max {self.max_new_tokens}")
        return " · ".join(parts)


# summary()'s short names, where they differ from the parameter's.
_SHORT = {
    "temperature": "T",
    "top_k": "top-k",
    "top_p": "top-p",
    "min_p": "min-p",
    "typical_p": "typical-p",
    "repetition_penalty": "rep",
    "no_repeat_ngram_size": "no-repeat",
    "max_new_tokens": "max",
}

TUTORIAL_VALUES: dict[str, Any] = {
    "max_new_tokens": 16,
    "do_sample": True,
    "top_k": 50,
    "top_p": 0.95,
    "temperature": 0.75,
    "repetition_penalty": 1.1,
}
"""The values of the tutorial's GenerationConfig cell, exactly."""


def help_text(lang: str = "en") -> str:
    """A help page of every parameter in English (``en``) or Traditional Chinese (``zh``)."""
    lines: list[str] = []
    for spec in PARAMS:
        helptext = spec.help_zh if lang == "zh" else spec.help_en
        advice = spec.advice_zh if lang == "zh" else spec.advice_en
        lines.append(
            f"{spec.name} ({spec.range_text()}; default {spec.format(spec.default) or '—'})"
        )
        lines.append(f"  {helptext}")
        lines.append(f"  {advice}")
    return "\n".join(lines)
