"""The label schema: a codebook YAML loaded, validated and made queryable.

The codebook is the single source of truth for label ids, names and definitions.
Everything else (Label Studio config, model heads, reports) is derived from it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import yaml

DEFAULT_CODEBOOK = Path(__file__).with_name("ihms.yaml")

_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_TOP_KEYS = {"schema", "version", "dimensions", "metadata"}
_DIM_KEYS = {"id", "zh", "en", "multi_label", "hierarchical", "groups", "labels", "definition"}
_GROUP_KEYS = {"id", "zh", "en", "definition", "labels"}
_LABEL_KEYS = {"id", "zh", "en", "definition", "cues"}


class CodebookError(ValueError):
    """A codebook file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Label:
    id: str
    zh: str
    en: str
    dimension: str
    definition: str = ""
    group: str | None = None
    cues: tuple[str, ...] = ()


@dataclass(frozen=True)
class Group:
    id: str
    zh: str
    en: str
    definition: str
    labels: tuple[Label, ...]


@dataclass(frozen=True)
class Dimension:
    id: str
    zh: str
    en: str
    multi_label: bool
    labels: tuple[Label, ...]
    groups: tuple[Group, ...] = ()

    @property
    def hierarchical(self) -> bool:
        return bool(self.groups)

    @property
    def label_ids(self) -> list[str]:
        return [label.id for label in self.labels]


@dataclass
class Codebook:
    name: str
    version: str
    dimensions: tuple[Dimension, ...]
    metadata: dict = field(default_factory=dict)
    path: Path | None = None
    _lookup: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Per dimension: every spelling of a label or group -> its id: id, zh, en, lower-cased en,
        # and "zh en" (the display value of our labeling config, found in exports without aliases).
        for dim in self.dimensions:
            table: dict[str, str] = {}
            for item in [*dim.labels, *dim.groups]:
                for key in (item.id, item.zh, item.en, item.en.lower(), f"{item.zh} {item.en}"):
                    table.setdefault(key, item.id)
            self._lookup[dim.id] = table

    # -- lookup -------------------------------------------------------------
    def dimension(self, dim_id: str) -> Dimension:
        for dim in self.dimensions:
            if dim.id == dim_id:
                return dim
        raise KeyError(f"codebook {self.name!r} has no dimension {dim_id!r}")

    @property
    def dimension_ids(self) -> list[str]:
        return [d.id for d in self.dimensions]

    def label(self, label_id: str) -> Label:
        for dim in self.dimensions:
            for label in dim.labels:
                if label.id == label_id:
                    return label
        raise KeyError(f"codebook {self.name!r} has no label {label_id!r}")

    def group(self, group_id: str) -> Group:
        for dim in self.dimensions:
            for group in dim.groups:
                if group.id == group_id:
                    return group
        raise KeyError(f"codebook {self.name!r} has no group {group_id!r}")

    def name_of(self, item_id: str, lang: str = "zh") -> str:
        try:
            item = self.label(item_id)
        except KeyError:
            item = self.group(item_id)
        return getattr(item, lang)

    def resolve(self, dim_id: str, value: str) -> str | None:
        """Map an id, Chinese or English name (of a label or group) to its id; None if unknown."""
        table = self._lookup[dim_id]
        value = str(value).strip()
        return table.get(value) or table.get(value.lower())

    def is_group(self, dim_id: str, item_id: str) -> bool:
        return any(g.id == item_id for g in self.dimension(dim_id).groups)

    def groups_of(self, dim_id: str, label_ids: Iterable[str]) -> list[str]:
        """Groups implied by a set of sub-labels (the hierarchy), in codebook order."""
        chosen = set(label_ids)
        return [g.id for g in self.dimension(dim_id).groups if any(l.id in chosen for l in g.labels)]

    # -- the flat label space a model predicts ------------------------------
    @property
    def flat_labels(self) -> list[tuple[str, str]]:
        """(dimension, label id) for every leaf label, in codebook order: one model output each."""
        return [(dim.id, label.id) for dim in self.dimensions for label in dim.labels]

    def to_dict(self) -> dict:
        """A JSON-friendly view (used by the API and model cards)."""
        def label_dict(l: Label) -> dict:
            return {"id": l.id, "zh": l.zh, "en": l.en, "definition": l.definition, "group": l.group}

        return {
            "schema": self.name,
            "version": self.version,
            "dimensions": [
                {
                    "id": d.id, "zh": d.zh, "en": d.en, "multi_label": d.multi_label,
                    "groups": [{"id": g.id, "zh": g.zh, "en": g.en, "definition": g.definition,
                                "labels": [l.id for l in g.labels]} for g in d.groups],
                    "labels": [label_dict(l) for l in d.labels],
                }
                for d in self.dimensions
            ],
            "metadata": self.metadata,
        }


def _text(value) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _check_keys(where: str, node: dict, allowed: set[str], fail) -> None:
    unknown = sorted(set(node) - allowed)
    if unknown:
        fail(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _node_id(where: str, node, kind: str, allowed: set[str], fail) -> str:
    """Check that a dimension/group/label node is a mapping with known keys and a valid id."""
    if not isinstance(node, dict):
        fail(f"{where}: a {kind} must be a mapping, got {type(node).__name__}")
    _check_keys(where, node, allowed, fail)
    node_id = node.get("id")
    if not isinstance(node_id, str) or not _ID.match(node_id):
        fail(f"{where}: {kind} id {node_id!r} must be a lower-case ASCII key like 'talent_construction'")
    return node_id


def _label(node, dim_id: str, group: str | None, where: str, fail) -> Label:
    label_id = _node_id(where, node, "label", _LABEL_KEYS, fail)
    cues = node.get("cues") or []
    if not isinstance(cues, list):
        fail(f"{where}: 'cues' of {label_id} must be a list")
    return Label(
        id=label_id, zh=_text(node.get("zh") or label_id), en=_text(node.get("en") or label_id),
        dimension=dim_id, definition=_text(node.get("definition")), group=group,
        cues=tuple(str(c) for c in cues),
    )


def parse_codebook(data, source: str = "<codebook>") -> Codebook:
    def fail(msg: str):
        raise CodebookError(f"{source}: {msg}")

    if not isinstance(data, dict):
        fail("the top level must be a mapping with 'schema', 'version' and 'dimensions'")
    _check_keys("top level", data, _TOP_KEYS, fail)
    dims_raw = data.get("dimensions")
    if not isinstance(dims_raw, list) or not dims_raw:
        fail("'dimensions' must be a non-empty list")

    seen: dict[str, str] = {}  # every id in the file -> where it was first defined

    def claim(item_id: str, where: str) -> None:
        if item_id in seen:
            fail(f"duplicate id {item_id!r} at {where} (first defined at {seen[item_id]})")
        seen[item_id] = where

    dimensions = []
    for i, dnode in enumerate(dims_raw):
        dim_id = _node_id(f"dimensions[{i}]", dnode, "dimension", _DIM_KEYS, fail)
        where = f"dimension {dim_id!r}"
        claim(dim_id, where)
        groups_raw, labels_raw = dnode.get("groups"), dnode.get("labels")
        if groups_raw and labels_raw:
            fail(f"{where}: give either 'groups' (hierarchical) or 'labels', not both")
        if not groups_raw and not labels_raw:
            fail(f"{where}: empty dimension (no 'labels' and no 'groups')")
        if bool(dnode.get("hierarchical")) and not groups_raw:
            fail(f"{where}: 'hierarchical: true' needs 'groups'")
        groups, labels = [], []
        if groups_raw:
            if not isinstance(groups_raw, list):
                fail(f"{where}: 'groups' must be a list")
            for j, gnode in enumerate(groups_raw):
                gid = _node_id(f"{where} groups[{j}]", gnode, "group", _GROUP_KEYS, fail)
                claim(gid, f"{where} group {gid!r}")
                if not isinstance(gnode.get("labels"), list) or not gnode["labels"]:
                    fail(f"{where}: group {gid!r} has no labels")
                glabels = []
                for k, lnode in enumerate(gnode["labels"]):
                    label = _label(lnode, dim_id, gid, f"{where} group {gid!r} labels[{k}]", fail)
                    claim(label.id, f"{where} group {gid!r}")
                    glabels.append(label)
                labels.extend(glabels)
                groups.append(Group(gid, _text(gnode.get("zh") or gid), _text(gnode.get("en") or gid),
                                    _text(gnode.get("definition")), tuple(glabels)))
        else:
            if not isinstance(labels_raw, list):
                fail(f"{where}: 'labels' must be a list")
            for k, lnode in enumerate(labels_raw):
                label = _label(lnode, dim_id, None, f"{where} labels[{k}]", fail)
                claim(label.id, where)
                labels.append(label)
        dimensions.append(Dimension(
            id=dim_id, zh=_text(dnode.get("zh") or dim_id), en=_text(dnode.get("en") or dim_id),
            multi_label=bool(dnode.get("multi_label", True)), labels=tuple(labels), groups=tuple(groups),
        ))
    name = data.get("schema")
    if not isinstance(name, str) or not name:
        fail("'schema' (the codebook's name) is missing")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        fail("'metadata' must be a mapping")
    return Codebook(name=name, version=str(data.get("version", "1")), dimensions=tuple(dimensions),
                    metadata=metadata)


def load_codebook(path: str | Path | None = None) -> Codebook:
    """Load and validate a codebook YAML (the shipped IHMS codebook by default)."""
    path = Path(path) if path else DEFAULT_CODEBOOK
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CodebookError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise CodebookError(f"{path}: not UTF-8 text ({exc.reason})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CodebookError(f"{path}: invalid YAML: {exc}") from None
    book = parse_codebook(data, str(path))
    book.path = path
    return book
