"""Interactions: the user, item, rating and time roles of a frame, the sparse user × item matrix, item attributes.

A frame here is what ``mlsvc.datasources.values.coerce_frame`` makes of a datasource (NUMERIC columns float64,
CATEGORICAL and TEXT columns ``str`` or None), or any pandas frame of strings and numbers.

Roles. ``roles`` maps a role to a column: ``user`` and ``item`` (required), ``rating`` (optional; ``weight`` is
an alias) and ``timestamp`` (optional). A role the caller leaves out is inferred from the column names
(``ROLE_HINTS``: user/customer/visitor…, item/product/article/sku…, rating/score/weight/quantity/event…,
timestamp/time/date/ts/event_time…); a name that says ``id`` wins among several candidates.

Weights. Every row is one interaction with a weight: 1 without a rating column; the number itself for a numeric
rating column (quantities, stars, play counts); for a column of event names, ``EVENT_WEIGHTS`` (view 1,
add_to_cart 3, purchase 5…; an unknown event name weighs 1). Rows without a user or an item, and rows whose
weight is missing or not positive, are dropped and counted. The matrix holds, for each (user, item), the sum of
its rows' weights; so repeated views count more. Each candidate then reweighs the matrix its own way
(``candidates.weigh``).

Timestamps are numbers (epoch seconds or milliseconds: only their order matters) or dates and times in ISO 8601
(``2024-03-05T14:22:10Z``) or any form pandas reads; a row whose time cannot be read counts as older than any
other of its user's rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mlsvc.errors import ErrorCode, MlsvcError

ROLES = ("user", "item", "rating", "timestamp")
ROLE_ALIASES = {"weight": "rating", "user_id": "user", "item_id": "item", "time": "timestamp"}
ROLE_HINTS: dict[str, tuple[str, ...]] = {
    "user": (
        "user",
        "customer",
        "visitor",
        "client",
        "member",
        "shopper",
        "buyer",
        "account",
        "reader",
        "viewer",
        "listener",
        "person",
        "uid",
        "userid",
        "customerid",
        "visitorid",
    ),
    "item": (
        "item",
        "product",
        "article",
        "sku",
        "asin",
        "movie",
        "book",
        "song",
        "track",
        "video",
        "listing",
        "offer",
        "iid",
        "itemid",
        "productid",
        "articleid",
    ),
    "timestamp": (
        "timestamp",
        "time",
        "date",
        "datetime",
        "ts",
        "event_time",
        "eventtime",
        "created",
        "when",
        "epoch",
        "at",
    ),
    "rating": (
        "rating",
        "score",
        "weight",
        "quantity",
        "qty",
        "stars",
        "plays",
        "count",
        "event",
        "event_type",
        "eventtype",
        "action",
        "interaction",
        "value",
        "feedback",
    ),
}
# Event names, lower-cased with spaces and hyphens as underscores, to implicit weights.
EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 1.0,
    "visit": 1.0,
    "detail": 1.0,
    "open": 1.0,
    "play": 1.0,
    "impression": 1.0,
    "like": 2.0,
    "favorite": 2.0,
    "favourite": 2.0,
    "wishlist": 2.0,
    "add_to_wishlist": 2.0,
    "save": 2.0,
    "share": 2.0,
    "rate": 2.0,
    "review": 2.0,
    "cart": 3.0,
    "add_to_cart": 3.0,
    "addtocart": 3.0,
    "add_to_basket": 3.0,
    "basket": 3.0,
    "purchase": 5.0,
    "buy": 5.0,
    "order": 5.0,
    "checkout": 5.0,
    "transaction": 5.0,
    "conversion": 5.0,
}
ITEM_ROLES = ("item", "category", "price", "text")
ITEM_ROLE_HINTS: dict[str, tuple[str, ...]] = {
    "item": ROLE_HINTS["item"],
    "category": (
        "category",
        "categories",
        "genre",
        "department",
        "dept",
        "section",
        "class",
        "type",
        "group",
        "family",
        "brand",
    ),
    "price": ("price", "cost", "amount", "msrp", "usd", "eur"),
    "text": ("title", "name", "description", "text", "tags", "keywords", "summary", "label"),
}


@dataclass(frozen=True)
class Roles:
    """Which column plays each role; ``rating`` and ``timestamp`` may be absent."""

    user: str
    item: str
    rating: str | None = None
    timestamp: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"user": self.user, "item": self.item, "rating": self.rating, "timestamp": self.timestamp}


@dataclass
class Interactions:
    """Interaction rows as index arrays, with the id ↔ index maps and the summed user × item matrix."""

    users: np.ndarray  # int32, one per row
    items: np.ndarray  # int32
    weights: np.ndarray  # float32, > 0
    timestamps: np.ndarray | None  # float64 seconds (or the column's own unit), -inf where unreadable
    user_ids: pd.Index  # str ids; position = user index
    item_ids: pd.Index  # str ids; position = item index
    roles: Roles
    dropped_rows: int = 0
    notes: list[str] = field(default_factory=list)
    _matrix: sp.csr_matrix | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def matrix(self) -> sp.csr_matrix:
        """Users × items, float32: the sum of each pair's weights (duplicates summed), sorted indices."""
        if self._matrix is None:
            self._matrix = to_matrix(self.users, self.items, self.weights, self.n_users, self.n_items)
        return self._matrix

    def subset(self, keep: np.ndarray) -> Interactions:
        """The rows where ``keep`` is true, with the same id maps (so matrices keep their shape)."""
        ts = None if self.timestamps is None else self.timestamps[keep]
        return replace(
            self,
            users=self.users[keep],
            items=self.items[keep],
            weights=self.weights[keep],
            timestamps=ts,
            _matrix=None,
        )


def to_matrix(users: np.ndarray, items: np.ndarray, weights: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """A CSR matrix with the weights of equal (user, item) pairs summed."""
    matrix = sp.csr_matrix((weights.astype(np.float32), (users, items)), shape=(n_users, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


# ------------------------------------------------------------------------------------------------ roles


def _tokens(name: str) -> list[str]:
    """A column name's words: ``userId`` and ``user-id`` both give ``["user", "id"]``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]


def _hint_score(name: str, hints: Sequence[str]) -> int:
    """How strongly a column name suggests a role: 0 not at all, 3 exactly (``user``, ``user_id``)."""
    tokens = _tokens(name)
    if not tokens:
        return 0
    joined = "_".join(tokens)
    bare = "_".join(t for t in tokens if t not in ("id", "key", "code", "no", "num"))
    if joined in hints or bare in hints or joined.replace("_", "") in hints:
        return 3 + ("id" in tokens)
    if any(t in hints for t in tokens):
        return 1 + ("id" in tokens)
    return 0


def _infer(columns: Sequence[str], hints: Sequence[str], taken: set[str]) -> str | None:
    scored = [(_hint_score(c, hints), -i, c) for i, c in enumerate(columns) if c not in taken]
    best = max(scored, default=(0, 0, None))
    return best[2] if best[0] > 0 else None


def _normalise_roles(
    roles: Mapping[str, str | None] | None, allowed: Sequence[str], aliases: Mapping[str, str] | None = None
) -> dict[str, str | None]:
    given: dict[str, str | None] = {}
    for key, column in (roles or {}).items():
        role = (aliases or {}).get(key, key)
        if role not in allowed:
            raise MlsvcError(ErrorCode.INVALID_REQUEST, f"unknown role '{key}'; roles are {list(allowed)}")
        given[role] = column
    return given


def resolve_roles(columns: Sequence[str], roles: Mapping[str, str | None] | None = None) -> Roles:
    """The columns for user, item, rating and timestamp: as given (a column may be None to say "none"),
    the rest inferred from the names."""
    columns = [str(c) for c in columns]
    given = _normalise_roles(roles, ROLES, ROLE_ALIASES)
    for role, column in given.items():
        if column is not None and column not in columns:
            raise MlsvcError(
                ErrorCode.INVALID_REQUEST, f"column '{column}' (the {role} role) not found; columns are {columns}"
            )
    taken = {c for c in given.values() if c is not None}
    found: dict[str, str | None] = {}
    for role in ("user", "item", "timestamp", "rating"):
        if role in given:
            found[role] = given[role]
            continue
        found[role] = _infer(columns, ROLE_HINTS[role], taken)
        if found[role] is not None:
            taken.add(found[role])  # type: ignore[arg-type]
    for role in ("user", "item"):
        if found[role] is None:
            raise MlsvcError(
                ErrorCode.INVALID_REQUEST,
                f"no {role} column: none of the columns {columns} looks like one (names such as "
                f"{list(ROLE_HINTS[role][:4])}); name it with roles={{'{role}': '<column>'}}",
                {"columns": columns},
            )
    if found["user"] == found["item"]:
        raise MlsvcError(ErrorCode.INVALID_REQUEST, f"column '{found['user']}' cannot be both the user and the item")
    return Roles(found["user"], found["item"], found["rating"], found["timestamp"])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ values


def id_strings(values: pd.Series | Sequence[object]) -> np.ndarray:
    """Ids as stripped strings (None where missing): 17, 17.0 and "17" are the same id."""
    s = pd.Series(values, copy=False) if not isinstance(values, pd.Series) else values
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        numbers = s.to_numpy(dtype=np.float64, na_value=np.nan)
        out = np.full(len(numbers), None, dtype=object)
        present = np.isfinite(numbers)
        integral = present & (numbers == np.round(numbers)) & (np.abs(numbers) < 2**53)
        out[integral] = numbers[integral].astype(np.int64).astype(str)
        rest = present & ~integral
        out[rest] = [repr(float(v)) for v in numbers[rest]]
        return out
    out = np.array([_id_string(v) for v in s.tolist()], dtype=object)
    return out


def _id_string(value: object) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and not np.isfinite(value)):
        return None
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    text = str(value).strip()
    return text or None


def id_string(value: object) -> str | None:
    """One id as :func:`id_strings` reads it."""
    return _id_string(value)


def parse_weights(s: pd.Series, event_weights: Mapping[str, float] | None = None) -> tuple[np.ndarray, str]:
    """Weights of a rating column (NaN where missing or unknown), and how they were read."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan), "numeric"
    text = s.astype("string").str.strip()
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    present = text.notna() & (text != "")
    if present.sum() and np.isfinite(numbers[present.to_numpy()]).mean() >= 0.95:
        return numbers, "numeric"
    table = {_event_key(k): float(v) for k, v in (event_weights or EVENT_WEIGHTS).items()}
    keys = text.str.lower().str.replace(r"[\s\-]+", "_", regex=True)
    weights = np.array(keys.map(table).astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan))
    weights[present.to_numpy() & np.isnan(weights)] = 1.0
    return weights, "events"


def _event_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def parse_timestamps(s: pd.Series) -> np.ndarray:
    """Float seconds (or the column's own unit for numbers); NaN where a value cannot be read."""
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return _datetime_seconds(pd.to_datetime(s, utc=True))
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    text = s.astype("string").str.strip()
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    present = (text.notna() & (text != "")).to_numpy()
    if present.any() and np.isfinite(numbers[present]).all():
        return numbers
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    if parsed.notna().sum() < 0.9 * present.sum():
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    return _datetime_seconds(parsed)


def _datetime_seconds(parsed: pd.Series) -> np.ndarray:
    values = parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    nanos = values.to_numpy().astype("datetime64[ns]").astype(np.int64).astype(np.float64)
    nanos[values.isna().to_numpy()] = np.nan
    return nanos / 1e9


# ------------------------------------------------------------------------------------------------ building


def build_interactions(
    frame: pd.DataFrame,
    roles: Mapping[str, str | None] | Roles | None = None,
    *,
    event_weights: Mapping[str, float] | None = None,
) -> Interactions:
    """Resolve the roles of ``frame``'s columns and index its rows (see the module's docstring for the rules)."""
    if not isinstance(frame, pd.DataFrame):
        raise MlsvcError(ErrorCode.INVALID_REQUEST, f"interactions must be a DataFrame, got {type(frame).__name__}")
    resolved = roles if isinstance(roles, Roles) else resolve_roles(list(frame.columns), roles)
    users = id_strings(frame[resolved.user])
    items = id_strings(frame[resolved.item])
    keep = pd.notna(users) & pd.notna(items)
    notes: list[str] = []
    if resolved.rating is not None:
        weights, how = parse_weights(frame[resolved.rating], event_weights)
        notes.append(f"weights from '{resolved.rating}' ({'numbers' if how == 'numeric' else 'event names'})")
    else:
        weights = np.ones(len(frame))
    keep &= np.isfinite(weights) & (weights > 0)
    timestamps = None
    if resolved.timestamp is not None:
        timestamps = parse_timestamps(frame[resolved.timestamp])
        readable = np.isfinite(timestamps)
        if len(frame) and not readable[keep].any():
            examples = frame[resolved.timestamp].dropna().astype(str).head(3).tolist()
            raise MlsvcError(
                ErrorCode.INVALID_DATA,
                f"column '{resolved.timestamp}' (the timestamp role) has no value that reads as a "
                f"time or a number, e.g. {examples}; give numbers or ISO 8601 dates, or roles="
                f"{{'timestamp': None}}",
            )
        unreadable = int((~readable & keep).sum())
        if unreadable:
            notes.append(f"{unreadable} rows have no readable '{resolved.timestamp}': they count as the oldest")
        timestamps = np.where(readable, timestamps, -np.inf)
    dropped = int(len(frame) - keep.sum())
    if dropped:
        notes.append(
            f"{dropped} of {len(frame)} rows dropped: no user, no item, or a weight that is missing or not positive"
        )
    if not keep.any():
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"no usable interactions: all {len(frame)} rows lack a user ('{resolved.user}'), an item "
            f"('{resolved.item}') or a positive weight",
        )
    user_codes, user_ids = pd.factorize(users[keep])
    item_codes, item_ids = pd.factorize(items[keep])
    return Interactions(
        users=user_codes.astype(np.int32),
        items=item_codes.astype(np.int32),
        weights=weights[keep].astype(np.float32),
        timestamps=None if timestamps is None else timestamps[keep].astype(np.float64),
        user_ids=pd.Index(user_ids, dtype=object),
        item_ids=pd.Index(item_ids, dtype=object),
        roles=resolved,
        dropped_rows=dropped,
        notes=notes,
    )


# ------------------------------------------------------------------------------------------------ item attributes


@dataclass
class ItemAttributes:
    """What is known of each item of a catalogue (by its own id order): category, price and words."""

    item_ids: pd.Index
    category: np.ndarray | None  # object: str or None
    price: np.ndarray | None  # float64, NaN where unknown
    text: sp.csr_matrix | None  # tf-idf rows, L2-normalised
    roles: dict[str, str | None]

    def similarity(self, position: int) -> np.ndarray:
        """How alike every catalogue item is to the one at ``position``: same category 1, shared words up to
        0.5 (tf-idf cosine), close price up to 0.25 (exp(−|Δ ln price| / 0.5))."""
        n = len(self.item_ids)
        score = np.zeros(n)
        if self.category is not None and self.category[position] is not None:
            score += (self.category == self.category[position]).astype(np.float64)
        if self.text is not None:
            score += 0.5 * (self.text @ self.text[position].T).toarray().ravel()
        if self.price is not None and np.isfinite(self.price[position]) and self.price[position] > 0:
            with np.errstate(invalid="ignore", divide="ignore"):
                gap = np.abs(np.log(self.price) - np.log(self.price[position]))
            score += 0.25 * np.nan_to_num(np.exp(-gap / 0.5), nan=0.0)
        return score


def resolve_item_roles(columns: Sequence[str], roles: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """The items frame's id, category, price and text columns: as given, the rest inferred from the names."""
    columns = [str(c) for c in columns]
    given = _normalise_roles(roles, ITEM_ROLES)
    for role, column in given.items():
        if column is not None and column not in columns:
            raise MlsvcError(
                ErrorCode.INVALID_REQUEST, f"items column '{column}' (the {role} role) not found; columns are {columns}"
            )
    taken = {c for c in given.values() if c is not None}
    found: dict[str, str | None] = {}
    for role in ITEM_ROLES:
        found[role] = given[role] if role in given else _infer(columns, ITEM_ROLE_HINTS[role], taken)
        if found[role] is not None:
            taken.add(found[role])  # type: ignore[arg-type]
    if found["item"] is None:
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST,
            f"the items frame has no item id column among {columns}; name it with item_roles={{'item': '<column>'}}",
        )
    return found


def build_item_attributes(frame: pd.DataFrame, roles: Mapping[str, str | None] | None = None) -> ItemAttributes:
    """Index an items frame (one row per item; a repeated id keeps its first row)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    found = resolve_item_roles(list(frame.columns), roles)
    ids = id_strings(frame[found["item"]])
    keep = pd.notna(ids) & ~pd.Series(ids).duplicated().to_numpy()
    frame, ids = frame.loc[keep], ids[keep]
    category = None
    if found["category"] is not None:
        category = np.array([_id_string(v) for v in frame[found["category"]].tolist()], dtype=object)
    price = None
    if found["price"] is not None:
        price = pd.to_numeric(frame[found["price"]], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    text = None
    if found["text"] is not None:
        words = frame[found["text"]].fillna("").astype(str).tolist()
        try:
            text = TfidfVectorizer(sublinear_tf=True).fit_transform(words).tocsr().astype(np.float32)
        except ValueError:  # no words at all
            text = None
    return ItemAttributes(pd.Index(ids, dtype=object), category, price, text, found)
