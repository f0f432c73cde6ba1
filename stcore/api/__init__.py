"""The one surface that both faces call: the `stcore` CLI and the dashboard.

Projects (create, open, status and counts), review decisions with their checks, runs (start,
cancel, resume, list, progress), evaluation results and exports. Every function takes plain
values and returns plain data; errors a user can act on are stcore.errors.StcoreError.

Reading a project never imports torch: status, runs, review, cancel and label exports stay
fast. The functions that train, infer or read images import the heavy modules when called.

One module per feature; this package is their one surface:
  projects.py    create, open, migrate; labels, counts, status
  classes.py     the class list and its edits: add, rename, merge, remove, split
  runs.py        start any job kind, list, follow, cancel, resume; estimates
  review.py      decisions, undo, the queue in pages, labels on any item, bulk-accept impact
  continuous.py  learning while you label: a refresh job every N decisions
  suggest.py     what to label next (typical, uncertain, random), a simulated labeler
  insight.py     similar images, likely label errors, near-duplicates, the map, what more labels would buy
  evaluation.py  test results, calibration, regressions per class, promote
  export.py      labels as CSV or JSON, datasets for other tools (imagefolder, Hugging Face, Label Studio),
                 a model (.pt or ONNX)
  predict.py     new image files classified with a run's model, here or as a detached job
  importing.py   labels from other tools (CSV, our JSON, Label Studio, class folders)
  users.py       accounts and roles: add, list, remove, sign in and out
  team.py        overlap (K reviewers an item), votes, conflicts, agreement, who did how much when
"""
from __future__ import annotations

# Names the faces read from here rather than from the modules below the API.
from ..access import default_project_path, is_local, password_configured, stcore_home  # noqa: F401
from ..actions import ACTIONS, LABELED, REVIEW_STATUSES, STATUS_COLORS, STATUSES, table as review_actions  # noqa: F401
from ..jobs import current_phase, duration, eta_seconds, phase_eta  # noqa: F401
from ..kinds import KINDS, MAP_METHODS, default_model, embeddings, has_ssl_encoder, recommended_backbone  # noqa: F401
from ..orders import DEFAULT_ORDER, ORDER_ALIASES, ORDERS  # noqa: F401
from ..project import DATASETS, DB, Project, default_reviewer, is_project  # noqa: F401
from ..store import ACTIVE_STATES, RUN_STATES  # noqa: F401
from .export import _csv_safe  # noqa: F401 (its test)

from .projects import (  # noqa: F401
    info, open_project, migrate_store, create_project, ensure_default_project, counts, class_counts,
    labels, pseudo_label_accuracy, status,
    skipped_files, teacher, images)
from .classes import (  # noqa: F401
    UNLABELED, Plan, classes, class_history, add_classes, rename_class, plan_merge, plan_remove, plan_split,
    edit_classes, merge_classes, remove_class, split_class, offers)
from .runs import (  # noqa: F401
    runs, run, running_in, metrics, active, devices, resolve_device,
    models, methods, method_aliases, train_config, start_training, start_job,
    job_defaults, resumable, summary, world_size, batch_per_process, placement,
    node_commands, start_pseudo_label, BACKBONES, start_embedding, start_label_issues, start_duplicates,
    start_map, start_evaluation, cancel, resume, estimate_training)
from .review import (  # noqa: F401
    all_or_nothing, review, still_pending, accept_above, count_above, undo,
    last_action, history, review_page, review_count, simulate_review, SELECTION, LEASE_SECONDS, lease, release, held_by_others,
    set_selection, selection, items, set_label, bulk_accept_impact, ids_accept_impact)
from .continuous import DEFAULT_EVERY as CONTINUOUS_EVERY, continuous_status, set_continuous, set_continuous_every  # noqa: F401,E501
from .suggest import DEFAULT_COUNT as SUGGEST_COUNT, STRATEGIES, suggest  # noqa: F401
from .insight import (  # noqa: F401
    similar, label_issues, MAP_POINTS, map_points, MAP_COLUMNS, duplicates, labels_digest, label_curve)
from .evaluation import (  # noqa: F401
    promote, accuracy_of, evaluation, test_predictions, test_items, summary_of,
    calibration, class_regressions)
from .export import (  # noqa: F401
    EXPORT_COLUMNS, label_rows, labels_csv, labels_json, export_labels, model_run, model_bytes,
    export_model, FORMATS as EXPORT_FORMATS, export_dataset)
from .predict import (PREDICTION_COLUMNS, predict_files, write_predictions, start_predict, predictions,  # noqa: F401
                      save_uploads, predictions_csv, predictions_bytes)
from ..labelformats import IMAGE_EXTS  # noqa: F401 (the files a folder dataset and predict read)
from .importing import import_labels  # noqa: F401
from ..labelformats import FORMATS as IMPORT_FORMATS  # noqa: F401
from .users import (  # noqa: F401
    ADMIN_ONLY, ROLES, has_users, users, add_user, remove_user, sign_in, signed_in, sign_out, allowed, require,
    account_of)
from .team import (  # noqa: F401
    MAX_OVERLAP, overlap, set_overlap, conflicts, count_conflicts, with_votes, agreement, activity, may_settle,
    reviewer_stats, ACTIVE_GAP)
