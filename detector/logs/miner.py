"""Template mining for one service, with bounded work and memory.

`ServiceMiner.assign(messages)` maps each message to a template index. The
steps per line:

1. mask (`masking.mask_tokens`): variable parts become placeholders, the line
   is cut to `max_message_chars` / `max_tokens`;
2. look the masked text up in a two-generation memo (masked text -> template
   index). Realistic logs repeat a few dozen shapes, so almost every line
   stops here;
3. otherwise compare the tokens with the templates of their leaf and join
   the best one, or start a new template.

The comparison (a Drain-like parse tree of depth one, with a different rule
for merging):

- a leaf holds the templates with one token count and one first token; a
  first token that looks like a value (a placeholder, a digit, a path, a
  dotted name) is keyed as `<*>`, so `proxy.example.com:443 open ...` and
  `com.apple.job.daily: ...` lines are compared whatever the value;
- two tokens at one position that differ are a *value* difference when both
  look like values (placeholders of different kinds, paths, dotted names,
  tokens with digits) and a *word* difference otherwise;
- a line joins a template when at least `sim_th` of its positions match and
  no position differs by a word; value differences become `<*>`;
- one word difference does not merge: "VM Started" / "VM Stopped", "Failed
  password" / "Failed none" are different events, and a new error that
  differs from a known line by one word must be new to the novelty test. Only
  when `word_variants` different words have been seen at one position of
  otherwise matching lines does that position become `<*>` ("user alice
  logged out", "user bob ...": a user name, not an event). The templates
  that were created for the earlier words then converge on the general one:
  their text (so their public id) follows it, and their later lines go to it.

Bounds:

- at most `max_templates_per_service` templates; past it, a line that
  matches no template counts into the service's overflow template
  (`OVERFLOW_TEXT`), and the overflow is counted. Templates are never evicted:
  an evicted shape that comes back would be a false "never seen before";
- at most `max_clusters_per_leaf` templates compared per line; a full leaf
  sends unmatched lines to the overflow (a flood of random messages costs
  at most that many comparisons per line, each stopped at the second word
  difference);
- at most `word_variants` remembered words per template position.

Template indices are handed out by the caller (`allocate`). When a template's
text changes (a token becomes `<*>`), its index and the indices converged on
it are added to `changed` so the caller can refresh their text.

State (`to_state` / `from_state`) is plain data: the templates in creation
order, each with its leaf, its remembered words and the template it
converged on. Restoring rebuilds the exact leaves, so a restored miner
assigns every later line as the original would. The memo is not persisted: it
only short-cuts a lookup whose answer the leaves give again (except in a rare
case: a template created later that a shape matches with more equal tokens
than the one it was first given; a shape goes to its first template while
memoised, to the better one after a rotation or restart).
"""

from __future__ import annotations

import re
from typing import Callable

from detector.logs.masking import mask_tokens
from detector.logs.settings import LogSettings

OVERFLOW_TEXT = "<OTHER>"
PARAM = "<*>"

# A token that looks like a value rather than a word: a placeholder, a digit,
# a path, a dotted name (`com.apple.job`, `host.example.com`), no letter at all.
_VALUE = re.compile(r"[<\d/]|\w\.\w|^[^A-Za-z]*$").search


class Template:
    """One template of a service: its tokens and what the miner remembers about it."""

    __slots__ = ("index", "tokens", "leaf", "words", "target")

    def __init__(self, index: int, tokens: list[str], leaf: tuple[int, str]) -> None:
        self.index = index
        self.tokens = tokens
        self.leaf = leaf
        self.words: dict[int, list[str]] = {}  # position -> distinct words seen there (bounded)
        self.target = -1  # index of the template this one converged on, -1 if none


def leaf_key(tokens: list[str]) -> tuple[int, str]:
    if not tokens:
        return 0, ""
    first = tokens[0]
    return len(tokens), PARAM if _VALUE(first) else first


class ServiceMiner:
    """Masking, memo and a bounded template tree for the log lines of one service."""

    def __init__(self, settings: LogSettings, allocate: Callable[[tuple[str, ...]], int]) -> None:
        self.settings = settings
        self._allocate = allocate
        self._templates: dict[int, Template] = {}  # index -> template, in creation order
        self._leaves: dict[tuple[int, str], list[Template]] = {}
        self._aliases: dict[int, list[int]] = {}  # general template index -> indices converged on it
        self.overflow_index = -1
        self.overflow_lines = 0
        self.changed: set[int] = set()
        self._memo: dict[str, int] = {}
        self._memo_old: dict[str, int] = {}
        self.memo_hits = 0
        self.mined_lines = 0  # lines that missed the memo and went through the tree

    def __len__(self) -> int:
        return len(self._templates)

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
                    # _learn may have redirected memo entries; re-read the current generation.
                    memo, old = self._memo, self._memo_old
                    get = memo.get
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

    def _learn(self, tokens: list[str]) -> int:
        self.mined_lines += 1
        s = self.settings
        key = leaf_key(tokens)
        leaf = self._leaves.get(key)
        n = len(tokens)
        need = s.sim_th * n
        best = near = None
        best_same = near_same = -1
        near_pos = -1
        if leaf:
            for t in leaf:
                same = 0
                word_pos = -1
                words = 0
                for i, (a, b) in enumerate(zip(t.tokens, tokens)):
                    if a == b:
                        same += 1
                    elif a == PARAM:
                        pass
                    elif _VALUE(a) is None or _VALUE(b) is None:
                        words += 1
                        if words > 1:
                            break
                        word_pos = i
                if words == 0:
                    if same >= need and same > best_same:
                        best, best_same = t, same
                elif words == 1 and same + 1 >= need and same > near_same:
                    near, near_same, near_pos = t, same, word_pos
        if best is not None:
            return self._join(best, tokens)
        if near is not None:
            seen = near.words.setdefault(near_pos, [near.tokens[near_pos]])
            word = tokens[near_pos]
            if word not in seen:
                seen.append(word)
            if len(seen) >= s.word_variants:
                del near.words[near_pos]
                near.tokens[near_pos] = PARAM
                self._mark_changed(near)
                self._join(near, tokens)
                self._converge(near, leaf)  # type: ignore[arg-type]
                return near.index
        if (leaf is not None and len(leaf) >= s.max_clusters_per_leaf) \
                or len(self._templates) >= s.max_templates_per_service:
            return self._overflow()
        t = Template(self._allocate(tuple(tokens)), list(tokens), key)
        self._templates[t.index] = t
        self._leaves.setdefault(key, []).append(t)
        return t.index

    def _join(self, t: Template, tokens: list[str]) -> int:
        """Add a matching line to template `t`: positions where they differ become `<*>`."""
        tt = t.tokens
        changed = False
        for i, b in enumerate(tokens):
            if tt[i] != b and tt[i] != PARAM:
                tt[i] = PARAM
                t.words.pop(i, None)
                changed = True
        if changed:
            self._mark_changed(t)
        return t.index

    def _mark_changed(self, t: Template) -> None:
        """`t`'s text changed, and so did the text of every template converged on it."""
        self.changed.add(t.index)
        self.changed.update(self._aliases.get(t.index, ()))

    def _converge(self, general: Template, leaf: list[Template]) -> None:
        """Templates of the leaf that the generalised `general` now matches fold into it."""
        gt = general.tokens
        folded = set()
        aliases = self._aliases.setdefault(general.index, [])
        for t in leaf:
            if t is general:
                continue
            if all(a == b or a == PARAM for a, b in zip(gt, t.tokens)):
                # t and whatever had converged on t now follow `general`
                for idx in [t.index, *self._aliases.pop(t.index, ())]:
                    alias = self._templates[idx]
                    alias.target = general.index
                    alias.tokens = gt  # shared: the text follows the general template
                    aliases.append(idx)
                    folded.add(idx)
                    self.changed.add(idx)
        if folded:
            leaf[:] = [t for t in leaf if t.index not in folded]
            for memo in (self._memo, self._memo_old):
                for k, v in memo.items():
                    if v in folded:
                        memo[k] = general.index

    def _overflow(self) -> int:
        self.overflow_lines += 1
        if self.overflow_index < 0:
            self.overflow_index = self._allocate((OVERFLOW_TEXT,))
        return self.overflow_index

    def tokens_of(self, idx: int) -> tuple[str, ...]:
        """The current template tokens of template index `idx` of this service."""
        if idx == self.overflow_index:
            return (OVERFLOW_TEXT,)
        return tuple(self._templates[idx].tokens)

    def indices(self) -> list[int]:
        """Every template index of this service (the overflow's included once it exists)."""
        out = list(self._templates)
        if self.overflow_index >= 0:
            out.append(self.overflow_index)
        return out

    # --- state ---

    def to_state(self) -> dict:
        return {
            "templates": [[t.index, list(t.tokens), list(t.leaf), {str(p): w for p, w in t.words.items()}, t.target]
                          for t in self._templates.values()],
            "overflow_index": self.overflow_index,
            "overflow_lines": self.overflow_lines,
        }

    @classmethod
    def from_state(cls, state: dict, settings: LogSettings,
                   allocate: Callable[[tuple[str, ...]], int]) -> "ServiceMiner":
        """Rebuild a miner from `to_state` output; raises ValueError/KeyError/TypeError on malformed state."""
        miner = cls(settings, allocate)
        rows = state["templates"]
        for row in rows:
            idx, tokens, leaf, words, target = row
            if not (isinstance(idx, int) and isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)
                    and isinstance(leaf, list) and len(leaf) == 2 and isinstance(leaf[0], int)
                    and isinstance(leaf[1], str) and isinstance(words, dict) and isinstance(target, int)):
                raise ValueError(f"malformed template entry {row!r:.200}")
            if idx in miner._templates:
                raise ValueError(f"template index {idx} appears twice")
            if leaf[0] != len(tokens):
                raise ValueError(f"template {idx} has {len(tokens)} tokens but sits in a leaf for {leaf[0]}")
            t = Template(idx, tokens, (leaf[0], leaf[1]))
            for p, w in words.items():
                pos = int(p)
                if not (0 <= pos < len(tokens) and isinstance(w, list) and all(isinstance(x, str) for x in w)
                        and len(w) < settings.word_variants):
                    raise ValueError(f"template {idx} remembers malformed words at {p!r}: {w!r:.100}")
                t.words[pos] = list(w)
            t.target = target
            miner._templates[idx] = t
        for t in miner._templates.values():
            if t.target >= 0:
                general = miner._templates.get(t.target)
                if general is None or general.target >= 0:
                    raise ValueError(f"template {t.index} converged on {t.target}, which is not a live template")
                t.tokens = general.tokens
                miner._aliases.setdefault(t.target, []).append(t.index)
            else:
                miner._leaves.setdefault(t.leaf, []).append(t)
        for leaf in miner._leaves.values():
            if len(leaf) > settings.max_clusters_per_leaf:
                raise ValueError(f"a leaf holds {len(leaf)} templates, more than max_clusters_per_leaf")
        miner.overflow_index = int(state["overflow_index"])
        miner.overflow_lines = int(state["overflow_lines"])
        return miner
