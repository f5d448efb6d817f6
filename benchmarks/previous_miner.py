"""The masking and drain3 miner the detector shipped before its own miner, for comparison.

A verbatim copy of `detector/logs/masking.py` (masking rules v1) and of the
assignment half of `detector/logs/miner.py` (a bounded drain3 `Drain`, depth
4, sim_th 0.5) as of commit 6bbfa6b, so `benchmarks/loghub.py` measures the
previous version in the same run as the current one. Not used by the
detector. Needs drain3 (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable

from drain3.drain import Drain, LogCluster, Node


PLACEHOLDERS = ("<TS>", "<UUID>", "<EMAIL>", "<IP>", "<STR>", "<DUR>", "<SIZE>", "<HEX>", "<ID>", "<NUM>")

_H = "[0-9a-fA-F]"
# Tried in this order at each position of a token; the first that matches wins.
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("TS", r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
           r"|(?<![\w:])\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?(?![\w:])"),
    ("UUID", rf"{_H}{{8}}-{_H}{{4}}-{_H}{{4}}-{_H}{{4}}-{_H}{{12}}"),
    ("EMAIL", r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    ("IP", rf"(?<![\w:.])(?:{_H}{{0,4}}:){{2,7}}{_H}{{1,4}}(?![\w:])"
           r"|(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])"),
    ("DUR", r"(?<![\w.])\d+(?:\.\d+)?(?:ns|us|µs|ms|s|sec|secs|seconds?|min|mins|minutes?|h|hrs?|hours?)(?!\w)"),
    ("SIZE", r"(?<![\w.])\d+(?:\.\d+)?(?:[KMGTP]i?B|[kmgt]b|bytes?|B)(?!\w)"),
    ("HEX", rf"(?<![\w-])(?:0[xX]{_H}+|(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F]){_H}{{8,}})(?![\w-])"),
    ("ID", r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{6,}(?![\w-])"),
    ("NUM", r"(?<![\w.])[-+]?\d+(?:\.\d+)*(?!\w)"),
)
_COMBINED = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in _PATTERNS))
_REPLACEMENT = {name: f"<{name}>" for name, _ in _PATTERNS}
# A single quote opens a value only after a non-word character and closes one
# only before a non-word character (so "don't" is not a quote). `<` and `>`
# count as word characters here: a placeholder next to a quote must not turn
# it into a value on a second pass (masking is idempotent).
_QUOTED = re.compile(r"\"[^\"\n]*\"|(?<![\w>])'[^'\n]*'(?![\w<])|`[^`\n]*`")
_HAS_VARIABLE = re.compile(r"[\d@]").search

# Unit tokens that turn a preceding "<NUM>" token into a duration or a size.
_DURATION_UNITS = frozenset(("ns", "us", "µs", "ms", "s", "sec", "secs", "second", "seconds", "min", "mins",
                             "minute", "minutes", "h", "hr", "hrs", "hour", "hours"))
_SIZE_UNITS = frozenset(("B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB", "bytes", "byte"))
_UNITS = _DURATION_UNITS | _SIZE_UNITS

# Memo of token -> masked token. Masking is a pure function, so the memo is
# shared by every miner; it is cleared when full, which bounds its memory under
# a flood of distinct tokens at the price of a few re-masked tokens.
_MEMO_MAX_TOKENS = 100_000
_memo: dict[str, str] = {}


def _replace(m: re.Match) -> str:
    return _REPLACEMENT[m.lastgroup]  # type: ignore[index]


_sub = _COMBINED.sub


def _mask_token(token: str) -> str:
    masked = _sub(_replace, token) if _HAS_VARIABLE(token) else token
    if len(_memo) >= _MEMO_MAX_TOKENS:
        _memo.clear()
    _memo[token] = masked
    return masked


def first_line(message: str) -> str:
    """The line of a multi-line message that names what happened."""
    head, _, rest = message.partition("\n")
    if head.startswith("Traceback (most recent call last)"):
        lines = [ln for ln in rest.splitlines() if ln.strip()]
        if lines:
            return lines[-1].strip()
    return head


def mask_tokens(message: str, max_chars: int = 2000, max_tokens: int = 48) -> list[str]:
    """The masked whitespace tokens of `message`, at most `max_tokens` of them."""
    if "\n" in message:
        message = first_line(message)
    if len(message) > max_chars:
        message = message[:max_chars]
    if '"' in message or "'" in message or "`" in message:
        message = _QUOTED.sub("<STR>", message)
    tokens = message.split()
    if len(tokens) > max_tokens:
        del tokens[max_tokens:]
    get = _memo.get
    out = [get(t) or _mask_token(t) for t in tokens]
    if not _UNITS.isdisjoint(out):
        out = _merge_units(out)
    return out


def _merge_units(tokens: list[str]) -> list[str]:
    out: list[str] = []
    for t in tokens:
        if out and out[-1] == "<NUM>" and t in _UNITS:
            out[-1] = "<DUR>" if t in _DURATION_UNITS else "<SIZE>"
        else:
            out.append(t)
    return out


def mask(message: str, max_chars: int = 2000, max_tokens: int = 48) -> str:
    """`message` masked and whitespace-normalised: the text templates are mined from."""
    return " ".join(mask_tokens(message, max_chars, max_tokens))


# --- miner.py (commit 6bbfa6b), without its state methods ---------------------------------------

@dataclass(frozen=True)
class PreviousSettings:
    max_templates_per_service: int = 1_000
    max_message_chars: int = 2_000
    max_tokens: int = 48
    max_clusters_per_leaf: int = 50
    cache_entries_per_service: int = 4_096
    drain_depth: int = 4
    drain_sim_th: float = 0.5
    drain_max_children: int = 100


OVERFLOW_TEXT = "<OTHER>"
PARAM = "<*>"


class ServiceMiner:
    """Masking, memo and a bounded Drain for the log lines of one service."""

    def __init__(self, settings: "PreviousSettings", allocate: Callable[[tuple[str, ...]], int]) -> None:
        self.settings = settings
        self._allocate = allocate
        self.drain = Drain(depth=settings.drain_depth, sim_th=settings.drain_sim_th,
                           max_children=settings.drain_max_children, param_str=PARAM)
        self.cluster_index: dict[int, int] = {}
        self._index_cluster: dict[int, int] = {}
        self.overflow_index = -1
        self.overflow_lines = 0
        self.changed: set[int] = set()
        self._memo: dict[str, int] = {}
        self._memo_old: dict[str, int] = {}
        self.memo_hits = 0
        self.drain_lines = 0

    def __len__(self) -> int:
        return len(self.cluster_index)

    @property
    def memo_entries(self) -> int:
        return len(self._memo) + len(self._memo_old)

    # --- assignment ---

    def assign(self, messages: list[str]) -> list[int]:
        """The template index of each message, learning new templates on the way."""
        s = self.settings
        max_chars, max_tokens, cap = s.max_message_chars, s.max_tokens, s.cache_entries_per_service
        out = []
        append = out.append
        memo, old = self._memo, self._memo_old
        get = memo.get
        hits = 0
        for message in messages:
            tokens = mask_tokens(message, max_chars, max_tokens)
            key = " ".join(tokens)
            idx = get(key)
            if idx is None:
                idx = old.get(key)
                if idx is None:
                    idx = self._learn(tokens)
                else:
                    hits += 1
                if len(memo) >= cap:
                    # Two generations approximate an LRU at dict speed: shapes
                    # used in the last generation survive one rotation.
                    self._memo_old, old = memo, memo
                    self._memo = memo = {}
                    get = memo.get
                memo[key] = idx
            else:
                hits += 1
            append(idx)
        self.memo_hits += hits
        return out

    def _leaf(self, tokens: list[str]) -> Node | None:
        """The prefix-tree leaf `Drain.tree_search` would compare `tokens` against."""
        drain = self.drain
        node = drain.root_node.key_to_child_node.get(str(len(tokens)))
        if node is None or not tokens:
            return node
        depth, n, max_depth = 1, len(tokens), drain.max_node_depth
        for token in tokens:
            if depth >= max_depth or depth == n:
                break
            children = node.key_to_child_node
            child = children.get(token)
            if child is None:
                child = children.get(PARAM)
                if child is None:
                    return None
            node = child
            depth += 1
        return node

    def _learn(self, tokens: list[str]) -> int:
        self.drain_lines += 1
        drain = self.drain
        leaf = self._leaf(tokens)
        cluster = None
        if leaf is not None:
            cluster = drain.fast_match(leaf.cluster_ids, tokens, drain.sim_th, False)
        if cluster is not None:
            idx = self.cluster_index[cluster.cluster_id]
            new = tuple(drain.create_template(tokens, cluster.log_template_tokens))
            if new != cluster.log_template_tokens:
                cluster.log_template_tokens = new
                self.changed.add(idx)
            # cluster.size is left alone: with the memo in front it would count
            # memo misses, not lines (the registry counts lines).
            return idx
        full_leaf = leaf is not None and len(leaf.cluster_ids) >= self.settings.max_clusters_per_leaf
        if full_leaf or len(self.cluster_index) >= self.settings.max_templates_per_service:
            return self._overflow()
        drain.clusters_counter += 1
        cluster = LogCluster(tokens, drain.clusters_counter)
        drain.id_to_cluster[cluster.cluster_id] = cluster
        drain.add_seq_to_prefix_tree(drain.root_node, cluster)
        idx = self._allocate(cluster.log_template_tokens)
        self.cluster_index[cluster.cluster_id] = idx
        self._index_cluster[idx] = cluster.cluster_id
        return idx

    def _overflow(self) -> int:
        self.overflow_lines += 1
        if self.overflow_index < 0:
            self.overflow_index = self._allocate((OVERFLOW_TEXT,))
        return self.overflow_index

    def tokens_of(self, idx: int) -> tuple[str, ...]:
        """The current template tokens of template index `idx` of this service."""
        if idx == self.overflow_index:
            return (OVERFLOW_TEXT,)
        return self.drain.id_to_cluster[self._index_cluster[idx]].log_template_tokens


def template_ids(service: str, messages: list[str]) -> list[str]:
    """The public template id (hash of service and final template text) of every message, as the registry did."""
    tokens: list[tuple[str, ...]] = []
    miner = ServiceMiner(PreviousSettings(), lambda t: tokens.append(t) or len(tokens) - 1)
    idx = miner.assign(messages)
    texts = [" ".join(miner.tokens_of(i)) for i in range(len(tokens))]
    ids = [hashlib.blake2b(f"{service}\x00{t}".encode(), digest_size=6).hexdigest() for t in texts]
    return [ids[i] for i in idx]
