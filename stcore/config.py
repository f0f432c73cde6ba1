"""Run configuration as data: one frozen dataclass, built through one checked function.

make_config fills in what the user left out from the method's own defaults (methods.METHODS),
so a config always says exactly what a run does: its method, rounds, strength and budget.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .errors import ConfigError
from .fields import checked_values
from .methods import ALIASES, DEFAULT_METHOD, METHODS, STEPS_PER_ROUND, TEACHER_METHOD, TEACHER_STEPS

ROLES = ("teacher", "student")
INITS = ("teacher", "scratch", "ssl")
TARGET_MODELS = ("ema", "student")
AUGMENTS = ("weak", "strong")
ROLE_METHODS = {"teacher": (TEACHER_METHOD,), "student": tuple(METHODS)}


@dataclass(frozen=True)
class TrainConfig:
    role: str = "teacher"
    method: str = TEACHER_METHOD  # teacher: supervised; student: one of methods.METHODS
    model: str = "cnn"
    steps: int | None = None      # optimizer steps (shared by the rounds); None: from epochs
    epochs: float | None = None   # passes over the role's main set (teacher: labels, student: pool)
    lr: float = 0.03              # peak learning rate (SGD, Nesterov momentum), cosine decay
    batch_size: int = 64          # labeled images per step
    unlabeled_ratio: int = 3      # unlabeled images per step = ratio * batch_size (FixMatch's mu)
    threshold: float = 0.9        # confidence a pseudo-label needs (consistency without adaptive
                                  # thresholds, self-training); labelprop uses every label
    adaptive_threshold: bool = False  # consistency: FreeMatch's per-class thresholds instead of threshold
    temperature: float = 0.0      # targets are probabilities sharpened by 1/T; 0: hard (argmax) targets
    distribution_alignment: bool = True  # rescale pseudo-label probabilities toward the labeled class mix
    target_model: str = "ema"     # online methods: the EMA (Mean Teacher) or the student labels weak views
    balanced: bool = False        # sample the pool class-balanced by its pseudo-labels (Noisy Student)
    rounds: int = 1               # student: re-label the pool and restart the lr this many times
    label_aug: str = "weak"       # augmentation of labeled images: weak (shift, flip) or strong
    strength: float = 1.0         # student: magnitude of the strong augmentation of unlabeled images, (0, 1]
    unlabeled_weight: float = 1.0 # weight of the unlabeled loss against the labeled loss
    corrected_weight: float = 2.0 # a human correction is a hard example: it weighs this many labels
    use_unreviewed: bool = True   # student: also learn from unreviewed pseudo-labels
    init: str = "teacher"         # student: from the teacher's weights, scratch; either role: "ssl" encoder
    teacher_run: str = ""         # '' -> the project's current teacher
    ema_decay: float = 0.99
    weight_decay: float = 5e-4
    eval_every: int | None = None # steps between evaluations; None: ten per run
    log_every: int = 10           # steps between metric rows
    device: str = "cpu"           # cpu, cuda:N, mps; several GPUs: cuda:0,cuda:1 (one process each)
    nproc: int = 1                # processes per machine (DDP under torchrun); the batch is split among all
    nnodes: int = 1               # machines, each running nproc processes
    seed: int = 0

    def __post_init__(self):
        problems = validate(self)
        if problems:
            raise ConfigError("; ".join(problems))


def validate(c: TrainConfig) -> list[str]:
    # NaN passes every comparison below, so non-finite numbers are caught first.
    p = [f"{f.name} must be a finite number, not {getattr(c, f.name)}" for f in dataclasses.fields(c)
         if isinstance(getattr(c, f.name), float) and not math.isfinite(getattr(c, f.name))]
    if p:
        return p
    if c.role not in ROLES:
        return [f"role must be one of {', '.join(ROLES)}, not {c.role!r}"]
    if c.method not in ROLE_METHODS[c.role]:
        p.append(f"method {c.method!r} is not a {c.role} method; use one of "
                 f"{', '.join(ROLE_METHODS[c.role] + (tuple(ALIASES) if c.role == 'student' else ()))}")
    from .models import MODELS
    checks = [
        (c.model in MODELS, f"unknown model {c.model!r}; use one of {', '.join(MODELS)}"),
        (c.steps is None or c.steps > 0, f"steps must be positive, not {c.steps}"),
        (c.epochs is None or c.epochs > 0, f"epochs must be positive, not {c.epochs}"),
        (c.steps is None or c.epochs is None, "give steps or epochs, not both"),
        (c.lr > 0, f"lr (learning rate) must be positive, not {c.lr}"),
        (c.weight_decay >= 0, f"weight decay must be 0 or more, not {c.weight_decay}"),
        (c.unlabeled_weight >= 0, f"unlabeled weight must be 0 or more, not {c.unlabeled_weight}"),
        (c.corrected_weight > 0, f"corrected weight must be positive (2 counts a correction twice), "
                                 f"not {c.corrected_weight}"),
        (c.batch_size > 0, f"batch size must be positive, not {c.batch_size}"),
        (c.unlabeled_ratio > 0, f"unlabeled ratio must be positive, not {c.unlabeled_ratio}"),
        (0 <= c.threshold <= 1, f"threshold must be within [0, 1], not {c.threshold}"),
        (c.temperature >= 0, f"temperature must be 0 (hard targets) or more, not {c.temperature}"),
        (c.target_model in TARGET_MODELS, f"target model must be one of {', '.join(TARGET_MODELS)}, "
                                          f"not {c.target_model!r}"),
        (c.label_aug in AUGMENTS, f"label augmentation must be one of {', '.join(AUGMENTS)}, not {c.label_aug!r}"),
        (0 < c.strength <= 1, f"augmentation strength must be within (0, 1], not {c.strength}"),
        (c.rounds >= 1, f"rounds must be at least 1, not {c.rounds}"),
        (0 <= c.ema_decay < 1, f"ema decay must be within [0, 1), not {c.ema_decay}"),
        (c.init in INITS, f"init must be one of {', '.join(INITS)}, not {c.init!r}"),
        (c.init != "ssl" or c.model != "head", "--init ssl starts a network's layers; a head has none (use cnn)"),
        (c.log_every > 0, f"log_every must be positive, not {c.log_every}"),
        (c.eval_every is None or c.eval_every > 0, f"eval_every must be positive, not {c.eval_every}"),
        (c.nproc >= 1, f"nproc (processes per machine) must be at least 1, not {c.nproc}"),
        (c.nnodes >= 1, f"nnodes (machines) must be at least 1, not {c.nnodes}"),
        (c.nproc * c.nnodes == 1 or c.model != "head",
         "a head trains in one process (it is a single linear layer); use --nproc 1, or a network (cnn)"),
        (c.batch_size >= c.nproc * c.nnodes, f"the batch of {c.batch_size} is split among {c.nproc * c.nnodes} "
                                             f"processes; use a batch size of at least {c.nproc * c.nnodes}"),
    ]
    return p + [msg for ok, msg in checks if not ok]


def make_config(values: dict | None = None, **overrides) -> TrainConfig:
    """Build a TrainConfig from plain data (CLI, dashboard, a checkpoint). Unknown keys and
    values of the wrong type are errors, so a typo never becomes a silent default. What is left
    out comes from the method: its options (an alias such as fixmatch sets some), its defaults,
    and the default budget (teacher 400 steps, student 600 per round)."""
    clean = checked_values(TrainConfig, {**(values or {}), **overrides})
    role = clean.get("role", "teacher")
    if role == "student":
        method = clean.get("method", DEFAULT_METHOD)
        alias_opts: dict = {}
        if method in ALIASES:
            method, alias_opts = ALIASES[method]
        defaults = {**METHODS[method].defaults, **alias_opts} if method in METHODS else {}
        clean = {**defaults, **clean, "method": method}
    elif role == "teacher":
        clean.setdefault("method", TEACHER_METHOD)
    if clean.get("steps") is None and clean.get("epochs") is None and role in ROLES:
        clean["steps"] = default_steps(role, clean.get("rounds", 1))
    return TrainConfig(**clean)


def default_steps(role: str, rounds: int = 1) -> int:
    """The budget when neither steps nor epochs is given: 400 for a teacher, 600 per round for
    a student (labelprop: 3 rounds, 1,800 steps)."""
    return TEACHER_STEPS if role == "teacher" else STEPS_PER_ROUND * max(1, rounds)



# Values that older versions stored to mean "the method's default".
_LEGACY_DEFAULTS = {"method": "", "rounds": 0, "strength": 0.0, "steps": 0, "epochs": 0.0, "eval_every": 0}


def stored_config(values: dict) -> TrainConfig:
    """The config of a stored run (a resumed run, a checkpoint), including runs stored by older
    versions: keys this version does not know are dropped, their 'default' markers are read as
    absent, and students stored before the strength setting existed augmented at full strength."""
    values = checked_values(TrainConfig, values, strict=False)
    before_strength = values.get("role") == "student" and "strength" not in values
    values = {k: v for k, v in values.items() if _LEGACY_DEFAULTS.get(k, object()) != v}
    if values.get("role") == "student":
        if before_strength:
            values["strength"] = 1.0
        if values.get("method") == "soft" and values.get("temperature") == 0.0:
            del values["temperature"]  # the old 'soft' read 0 as its default temperature, 1
        if values.get("method") == "meanteacher":
            values["threshold"] = 0.0  # the old 'meanteacher' ignored the stored threshold
    return make_config(values)


def to_dict(c: TrainConfig) -> dict:
    return dataclasses.asdict(c)
