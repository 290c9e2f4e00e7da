import json

import pytest

from policytag.labels.export import load_export, parse_export
from policytag.labels.schema import load_codebook

from conftest import shared_path

BOOK = load_codebook()


def ann(result, who=1, when="2026-01-01T00:00:00", cancelled=False, truth=False):
    return {"completed_by": who, "result": result, "was_cancelled": cancelled, "ground_truth": truth,
            "created_at": when, "updated_at": when}


def choices(dim, *values):
    return {"from_name": dim, "to_name": "text", "type": "choices", "value": {"choices": list(values)}}


def taxonomy(*paths):
    return {"from_name": "tool", "to_name": "text", "type": "taxonomy", "value": {"taxonomy": [list(p) for p in paths]}}


def task(i, annotations, text="加强基层医疗卫生机构建设。", **data):
    return {"id": i, "data": {"text": text, "doc_id": f"d{i}", "paragraph_index": 0, **data}, "annotations": annotations}


def test_values_as_ids_names_and_taxonomy_paths_of_any_depth():
    tasks = [task(1, [ann([taxonomy(["supply", "talent_construction"]), choices("stakeholder", "居民", "Governments"),
                            choices("orientation", "Smart health care")])]),
             task(2, [ann([taxonomy(["资源共享"]), taxonomy(["环境型", "制度建设"])])])]
    examples, report = parse_export(tasks, BOOK)
    assert examples[0].labels == {"tool": ["talent_construction"], "stakeholder": ["government", "resident"],
                                  "orientation": ["smart_health"]}
    assert examples[1].labels["tool"] == ["institutional_building", "resource_sharing"]
    assert report.examples == 2 and not report.dropped and not report.unknown_labels


def test_skipped_drafts_unannotated_duplicates_and_unknown_labels_are_counted():
    tasks = [
        task(1, [ann([], cancelled=True)]),                       # skipped only -> dropped
        task(2, []),                                              # never annotated -> dropped
        {**task(3, [ann([choices("stakeholder", "physician")])]), "drafts": [{"result": []}]},
        {**task(4, [ann([choices("stakeholder", "physician")])]), "data": {"text": "x", "doc_id": "d3", "paragraph_index": 0}},
        task(5, [ann([choices("stakeholder", "martians", "resident")])]),
        task(6, [ann([])], text="   "),                          # no text
        task(7, [ann([])]),                                       # empty result: a real "no label" example
    ]
    examples, report = parse_export(tasks, BOOK)
    assert [e.task_id for e in examples] == [3, 5, 7]
    assert examples[1].labels["stakeholder"] == ["resident"]
    assert examples[2].labels == {"tool": [], "stakeholder": [], "orientation": []}
    assert report.dropped == {"no submitted annotation": 2, "duplicate task (same document paragraph)": 1, "no text": 1}
    assert report.unknown_labels == {"stakeholder:martians": 1}
    assert report.notes["drafts (not submitted)"] == 1 and report.notes["skipped/cancelled annotations"] == 1


def test_several_annotators_majority_tie_latest_and_ground_truth():
    a = ann([choices("stakeholder", "government", "resident")], who=1, when="2026-01-01")
    b = ann([choices("stakeholder", "government")], who=2, when="2026-01-02")
    c = ann([choices("stakeholder", "physician")], who=3, when="2026-01-03")
    (ex,), _ = parse_export([task(1, [a, b, c])], BOOK)
    assert ex.labels["stakeholder"] == ["government"]  # 2 of 3
    (ex,), _ = parse_export([task(1, [a, b])], BOOK)
    assert ex.labels["stakeholder"] == ["government"]  # resident is a 1-1 tie: the latest (b) lacks it
    (ex,), _ = parse_export([task(1, [b, a])], BOOK, policy="first")
    assert ex.labels["stakeholder"] == ["government", "resident"]
    truth = ann([choices("stakeholder", "physician")], who=4, when="2025-01-01", truth=True)
    (ex,), _ = parse_export([task(1, [a, b, truth])], BOOK)
    assert ex.labels["stakeholder"] == ["physician"] and ex.annotator == [4]


def test_bad_exports(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty export"):
        load_export(empty)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a Label Studio JSON export"):
        load_export(wrong)


def test_shared_annotations_parse_cleanly():
    examples, report = parse_export(shared_path("data", "annotations", "ihms-train.json"), BOOK)
    assert report.examples == report.tasks == len(examples) > 1000
    assert not report.unknown_labels and not report.dropped
    assert sum(bool(e.labels["tool"]) for e in examples) > 500
