"""Drain template mining for one service, with bounded work and memory.

`ServiceMiner.assign(messages)` maps each message to a template index. The
steps per line:

1. mask (`masking.mask_tokens`): variable parts become placeholders, the line
   is cut to `max_message_chars` / `max_tokens`;
2. look the masked text up in a two-generation memo (masked text -> template
   index). Realistic logs repeat a few dozen shapes, so almost every line
   stops here;
3. otherwise run Drain (drain3's `Drain`: its prefix tree, `fast_match`,
   `create_template` and `add_seq_to_prefix_tree`).

Bounds that drain3 does not give by itself:

- at most `max_templates_per_service` clusters. drain3's own `max_clusters`
  evicts the least recently used cluster, and an evicted shape that comes back
  would be a *new* template (a false "never seen before" after a deploy) with
  a new index. Here the cap is hard: a line that matches no cluster once the
  cap is reached counts into the service's overflow template (`OVERFLOW_TEXT`),
  and the overflow is counted;
- at most `max_clusters_per_leaf` clusters compared per line. Without it a
  flood of random messages piles thousands of clusters into one wildcard leaf
  and every line is compared with all of them (Drain's speed collapses to a
  few hundred lines/s). A full leaf sends unmatched lines to the overflow.

Template indices are handed out by the caller (`allocate`); the miner keeps
cluster id -> index. Drain cluster ids depend on arrival order and are never
exposed. When a line generalises a cluster's template (a token becomes `<*>`),
the cluster's index is added to `changed` so the caller can refresh its text.

State (`to_state` / `from_state`) is plain data: the prefix tree as nested
lists, clusters as [id, tokens, index]. Restoring rebuilds the exact
tree, so a restored miner assigns every later line as the original would.
The memo is not persisted: it only short-cuts a lookup whose answer Drain
gives again (except in rare ties between near-identical clusters).
"""

from __future__ import annotations

from typing import Callable

from drain3.drain import Drain, LogCluster, Node

from detector.logs.masking import mask_tokens
from detector.logs.settings import LogSettings

OVERFLOW_TEXT = "<OTHER>"
PARAM = "<*>"


class ServiceMiner:
    """Masking, memo and a bounded Drain for the log lines of one service."""

    def __init__(self, settings: LogSettings, allocate: Callable[[tuple[str, ...]], int]) -> None:
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

    # --- state ---

    def to_state(self) -> dict:
        clusters = self.drain.id_to_cluster
        return {
            "clusters_counter": self.drain.clusters_counter,
            "clusters": [[cid, list(clusters[cid].log_template_tokens), idx]
                         for cid, idx in self.cluster_index.items()],
            "tree": _node_state(self.drain.root_node),
            "overflow_index": self.overflow_index,
            "overflow_lines": self.overflow_lines,
        }

    @classmethod
    def from_state(cls, state: dict, settings: LogSettings,
                   allocate: Callable[[tuple[str, ...]], int]) -> "ServiceMiner":
        """Rebuild a miner from `to_state` output; raises ValueError/KeyError/TypeError on malformed state."""
        miner = cls(settings, allocate)
        drain = miner.drain
        drain.clusters_counter = int(state["clusters_counter"])
        for cid, tokens, idx in state["clusters"]:
            if not (isinstance(cid, int) and isinstance(idx, int) and isinstance(tokens, list)
                    and all(isinstance(t, str) for t in tokens)):
                raise ValueError(f"malformed cluster entry {[cid, tokens, idx]!r}")
            cluster = LogCluster(tokens, cid)
            drain.id_to_cluster[cid] = cluster
            miner.cluster_index[cid] = idx
            miner._index_cluster[idx] = cid
        drain.root_node = _node_from_state(state["tree"], drain.id_to_cluster)
        miner.overflow_index = int(state["overflow_index"])
        miner.overflow_lines = int(state["overflow_lines"])
        return miner


def _node_state(node: Node) -> list:
    return [list(node.cluster_ids), {k: _node_state(c) for k, c in node.key_to_child_node.items()}]


def _node_from_state(state: list, clusters: dict, depth: int = 0) -> Node:
    if depth > 64:
        raise ValueError("prefix tree deeper than 64 levels")
    ids, children = state
    if not isinstance(children, dict) or any(i not in clusters for i in ids):
        raise ValueError(f"prefix tree node refers to unknown clusters or has no child table: {ids!r}")
    node = Node()
    node.cluster_ids = list(ids)
    node.key_to_child_node = {str(k): _node_from_state(c, clusters, depth + 1) for k, c in children.items()}
    return node
