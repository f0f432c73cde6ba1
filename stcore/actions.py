"""The one table of review actions, and of the statuses they give a pool item.

The API checks an action against it, the CLI makes one option per action from it, the Review
grid draws its buttons and keys from it (its script gets the table as data), and the figures and
the grid colour a status from it. Adding an action is one entry in ACTIONS; an action that sets
a new status needs an entry in REVIEW_STATUSES too, which says what it does to the item's label.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Status:
    name: str
    color: str  # "#RRGGBB": the map's points, the grid's status pills and the buttons of the actions that set it
    help: str
    label: str = "none"  # the item's human label in this status: "prediction" (the teacher's class at the
    #                      time), "class" (the one the reviewer gave) or "none"


# In the order the Review page offers them as filters.
REVIEW_STATUSES = {s.name: s for s in (
    Status("pending", "#BAB0AC", "not decided yet: the teacher's pseudo-label, if any, stands"),
    Status("accepted", "#00CC96", "a person agreed with the teacher's class", label="prediction"),
    Status("corrected", "#AB63FA", "a person gave the item another class", label="class"),
    Status("rejected", "#7F7F7F", "a person said the image is unusable: it trains nothing"),
)}
STATUSES = tuple(REVIEW_STATUSES)
# Not a review status: the initial labeled set, drawn and shown beside the pool's items.
LABELED = Status("labeled", "#636EFA", "in the labeled set the project started from")
# Each status's colour, and the labeled set's last (the map draws in this order: it goes on top).
STATUS_COLORS = {**{name: s.color for name, s in REVIEW_STATUSES.items()}, LABELED.name: LABELED.color}


@dataclass(frozen=True)
class Action:
    name: str
    status: str              # the status it sets (a key of REVIEW_STATUSES)
    verb: str                # past tense, for messages: "Accepted 12 items"; lower case, the CLI's output key
    label: str               # its button: "Accept"
    help: str
    key: str | None = None   # the Review grid's key for the marked card; None: the grid does not offer it
    symbol: str = ""         # its button on a card (an action with a class has a list of classes instead)
    needs_class: bool = False       # the grid's key opens the class list when the classes have no number keys
    needs_prediction: bool = False  # takes the teacher's class: only for pseudo-labeled items, as their card showed it
    undoable: bool = True           # undo (per reviewer) reverts it
    offered_for: tuple[str, ...] = ()  # the statuses (or "labeled") of the grid's cards that offer it

    @property
    def color(self) -> str:
        return REVIEW_STATUSES[self.status].color


# In the order the grid's toolbar and cards show them; the first is the toolbar's main button.
ACTIONS = {a.name: a for a in (
    Action("accept", "accepted", "Accepted", "Accept", "accept the teacher's class", key="a", symbol="✓",
           needs_prediction=True, offered_for=("pending", "rejected")),
    Action("reject", "rejected", "Rejected", "Reject", "reject: not a usable image", key="x", symbol="✗",
           offered_for=("pending", "accepted", "corrected")),
    Action("correct", "corrected", "Corrected", "Correct", "give the item another class", key="l", needs_class=True,
           offered_for=(*STATUSES, LABELED.name)),
    Action("reset", "pending", "Reset", "Reset", "undecide: back to pending review"),
)}


def table() -> list[dict]:
    """The actions as plain data (for the grid's script), each with its colour."""
    return [{**asdict(a), "color": a.color} for a in ACTIONS.values()]
