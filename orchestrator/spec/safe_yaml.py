"""A YAML loader for search-space files that refuses what ``yaml.safe_load`` silently accepts.

- **Duplicate keys.** ``safe_load`` keeps the last of two equal keys, so a second ``grid:`` section drops
  every arm of the first without a word. Here a duplicate key is an error naming both lines.
- **Alias bombs.** A chain of anchors that each repeat the previous one ten times (``a: &a [x, x, ...]``,
  ``b: &b [*a, *a, ...]``, ...) is a few hundred bytes and expands to gigabytes before pydantic sees it.
  Here the number of alias uses per document is capped (:data:`MAX_ALIASES`), and so is the size of the
  document once every alias is expanded (:data:`MAX_NODES`, counted on the composed node graph before any
  Python object is built); a real search space uses a handful of aliases and a few hundred nodes.

Built on ``yaml.SafeLoader`` (never ``yaml.Loader``: no arbitrary Python objects).
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_ALIASES = 100  # alias (``*name``) uses per document; the shipped files use none
MAX_NODES = 100_000  # YAML nodes with aliases expanded; ablation.yaml has about 300


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping holds the same key twice."""


class AliasLimitError(yaml.MarkedYAMLError):
    """More than :data:`MAX_ALIASES` alias uses in one document."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that counts alias events and refuses duplicate mapping keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: ANN401 - yaml's own signature
        # every ``*name`` passes here as an AliasEvent before it is resolved to the anchored node
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise AliasLimitError(problem=f"more than {MAX_ALIASES} YAML aliases (*name)",
                                      problem_mark=mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: SafeConstructor raises its own error below
                break
            if first is not None:
                raise DuplicateKeyError(
                    problem=f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                    problem_mark=key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes of ``node`` with every alias expanded, counted once per distinct node (memo: id -> size), so
    a bomb of k levels of 10 aliases costs O(k) here instead of 10**k."""
    got = memo.get(id(node))
    if got is not None:
        return got
    memo[id(node)] = 1  # a recursive anchor (a node inside itself) counts once instead of looping
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(c, memo) for c in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


def load(text: str) -> Any:
    """Parse one YAML document like ``yaml.safe_load``, refusing duplicate keys and alias bombs.

    Raises:
        yaml.YAMLError: with ``problem`` / ``problem_mark`` set (the caller turns it into one line).
    """
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise AliasLimitError(problem=f"the document expands to {size} YAML nodes (more than "
                                          f"{MAX_NODES}; aliases repeat what they name)",
                                  problem_mark=node.start_mark)
        return loader.construct_document(node)
    finally:
        loader.dispose()
