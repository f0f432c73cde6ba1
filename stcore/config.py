"""Run configuration as data: one frozen dataclass, built through one checked function."""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

ROLES = ("teacher", "student")
# The first method of each role is its default. Students: labelprop learns pseudo-labels spread
# from the human labels along a nearest-neighbour graph of the pool, re-made from its own
# predictions each round; freematch, fixmatch and meanteacher label the weak view of each
# unlabeled batch as they train (online); pseudo and soft learn the teacher's stored
# pseudo-labels (offline).
METHODS = {"teacher": ("supervised",),
           "student": ("labelprop", "freematch", "fixmatch", "meanteacher", "pseudo", "soft")}
DEFAULT_ROUNDS = {"labelprop": 3}  # other methods: 1
# How hard the student's unlabeled images are augmented. Consistency methods need strong views;
# labelprop learns fixed labels, and on Fashion-MNIST it gained about a point with milder ones.
DEFAULT_STRENGTH = {"labelprop": 0.3}  # other methods: 1
INITS = ("teacher", "scratch")
TARGET_MODELS = ("ema", "student")
AUGMENTS = ("weak", "strong")


@dataclass(frozen=True)
class TrainConfig:
    role: str = "teacher"
    method: str = ""              # '' -> the role's default: supervised (teacher), labelprop (student)
    model: str = "cnn"
    steps: int = 0                # optimizer steps; 0 -> from epochs, or the role's default budget
    epochs: float = 0.0           # passes over the role's main set (teacher: labels, student: pool)
    lr: float = 0.03              # peak learning rate (SGD, Nesterov momentum), cosine decay
    batch_size: int = 64          # labeled images per step
    unlabeled_ratio: int = 3      # unlabeled images per step = ratio * batch_size (FixMatch's mu)
    threshold: float = 0.9        # confidence needed to use a pseudo-label (freematch adapts its own;
                                  # labelprop uses every propagated label)
    temperature: float = 0.0      # targets are probabilities sharpened by 1/T; 0 -> the method's
                                  # default: hard (argmax) targets, soft: 1 (the teacher's probabilities)
    distribution_alignment: bool = True  # rescale pseudo-label probabilities toward the labeled class mix
    target_model: str = "ema"     # online methods: the EMA (Mean Teacher) or the student labels weak views
    balanced: bool = False        # sample the pool class-balanced by its pseudo-labels (Noisy Student)
    rounds: int = 0               # student: the student re-labels the pool and restarts the lr this many
                                  # times; 0 -> the method's default (labelprop 3, others 1)
    label_aug: str = "weak"       # augmentation of labeled images: weak (shift, flip) or strong
    strength: float = 0.0         # student: magnitude of the strong augmentation of unlabeled images,
                                  # in (0, 1]; 0 -> the method's default (labelprop 0.3, others 1)
    unlabeled_weight: float = 1.0 # weight of the unlabeled loss against the labeled loss
    corrected_weight: float = 2.0 # a human correction is a hard example: it weighs this many labels
    use_unreviewed: bool = True   # student: also learn from unreviewed pseudo-labels
    init: str = "teacher"         # student: start from the teacher's weights or from scratch
    teacher_run: str = ""         # '' -> the project's current teacher
    ema_decay: float = 0.99
    weight_decay: float = 5e-4
    eval_every: int = 0           # steps between evaluations; 0 -> about ten per run
    log_every: int = 10           # steps between metric rows
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self):
        problems = validate(self)
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def resolved_method(self) -> str:
        return self.method or METHODS[self.role][0]

    @property
    def resolved_rounds(self) -> int:
        return self.rounds or DEFAULT_ROUNDS.get(self.resolved_method, 1)

    @property
    def resolved_strength(self) -> float:
        return self.strength or DEFAULT_STRENGTH.get(self.resolved_method, 1.0)

    @property
    def resolved_temperature(self) -> float:
        if self.temperature:
            return self.temperature
        return 1.0 if self.resolved_method == "soft" else 0.0


class ConfigError(ValueError):
    """A config field with a wrong name, type or value."""


def validate(c: TrainConfig) -> list[str]:
    # NaN passes every comparison below, so non-finite numbers are caught first.
    p = [f"{f.name} must be a finite number, not {getattr(c, f.name)}" for f in dataclasses.fields(c)
         if isinstance(getattr(c, f.name), float) and not math.isfinite(getattr(c, f.name))]
    if c.role not in ROLES:
        p.append(f"role must be one of {', '.join(ROLES)}, not {c.role!r}")
    elif c.method and c.method not in METHODS[c.role]:
        p.append(f"method {c.method!r} is not a {c.role} method; use one of {', '.join(METHODS[c.role])}")
    from .models import MODELS
    if c.model not in MODELS:
        p.append(f"unknown model {c.model!r}; use one of {', '.join(MODELS)}")
    if c.steps < 0:
        p.append(f"steps must be positive, not {c.steps}")
    if c.epochs < 0:
        p.append(f"epochs must be positive, not {c.epochs}")
    if c.lr <= 0:
        p.append(f"lr (learning rate) must be positive, not {c.lr}")
    if c.weight_decay < 0:
        p.append(f"weight decay must be 0 or more, not {c.weight_decay}")
    if c.unlabeled_weight < 0:
        p.append(f"unlabeled weight must be 0 or more, not {c.unlabeled_weight}")
    if c.corrected_weight <= 0:
        p.append(f"corrected weight must be positive (2 counts a correction twice), not {c.corrected_weight}")
    if c.batch_size <= 0:
        p.append(f"batch size must be positive, not {c.batch_size}")
    if c.unlabeled_ratio <= 0:
        p.append(f"unlabeled ratio must be positive, not {c.unlabeled_ratio}")
    if not 0 <= c.threshold <= 1:
        p.append(f"threshold must be within [0, 1], not {c.threshold}")
    if c.temperature < 0:
        p.append(f"temperature must be positive (or 0 for the method's default), not {c.temperature}")
    if c.target_model not in TARGET_MODELS:
        p.append(f"target model must be one of {', '.join(TARGET_MODELS)}, not {c.target_model!r}")
    if c.label_aug not in AUGMENTS:
        p.append(f"label augmentation must be one of {', '.join(AUGMENTS)}, not {c.label_aug!r}")
    if not 0 <= c.strength <= 1:
        p.append(f"augmentation strength must be within (0, 1] (or 0 for the method's default), not {c.strength}")
    if c.rounds < 0:
        p.append(f"rounds must be at least 1 (or 0 for the method's default), not {c.rounds}")
    if not 0 <= c.ema_decay < 1:
        p.append(f"ema decay must be within [0, 1), not {c.ema_decay}")
    if c.init not in INITS:
        p.append(f"init must be one of {', '.join(INITS)}, not {c.init!r}")
    if c.log_every <= 0 or c.eval_every < 0:
        p.append("log_every must be positive and eval_every not negative")
    return p


def make_config(values: dict | None = None, **overrides) -> TrainConfig:
    """Build a TrainConfig from plain data (CLI, dashboard, a checkpoint). Unknown keys and
    values of the wrong type are errors, so a typo never becomes a silent default."""
    values = {**(values or {}), **overrides}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    hints = typing.get_type_hints(TrainConfig)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    clean = {}
    for k, v in values.items():
        t = hints[k]
        if t is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if t is bool and not isinstance(v, bool) or t is not bool and isinstance(v, bool) \
                or not isinstance(v, t):
            raise ConfigError(f"config key {k!r} must be {t.__name__}, not {type(v).__name__} ({v!r})")
        clean[k] = v
    return TrainConfig(**clean)


def to_dict(c: TrainConfig) -> dict:
    return dataclasses.asdict(c)
