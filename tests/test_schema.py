import pytest
from typer.testing import CliRunner

from policytag.labels.schema import CodebookError, load_codebook
from policytag.cli import app

from conftest import ROOT, shared_path

runner = CliRunner()


def test_shipped_codebook_matches_shared_source():
    shipped = (ROOT / "labels" / "ihms.yaml").read_text(encoding="utf-8")
    assert shipped == shared_path("codebook", "ihms.yaml").read_text(encoding="utf-8")


def test_ihms_structure_and_lookup():
    book = load_codebook()
    tool = book.dimension("tool")
    assert [g.id for g in tool.groups] == ["supply", "demand", "environment"]
    assert len(tool.labels) == 18
    assert len(book.dimension("stakeholder").labels) == 5
    assert len(book.dimension("orientation").labels) == 5
    # any of id / zh / en maps to the id, for labels and groups
    assert book.resolve("tool", "人才建设") == "talent_construction"
    assert book.resolve("tool", "Talent construction") == "talent_construction"
    assert book.resolve("tool", "talent construction") == "talent_construction"
    assert book.resolve("tool", "供给型") == "supply"
    assert book.resolve("tool", "人才建设 Talent construction") == "talent_construction"  # config display value
    assert book.resolve("stakeholder", "居民") == "resident"
    assert book.resolve("tool", "no such label") is None
    assert book.groups_of("tool", ["medicine_supply", "resource_sharing", "price_adjustment"]) == ["demand", "environment"]
    assert book.label("resource_sharing").group == "environment"
    assert len(book.flat_labels) == 28


def test_second_codebook_loads_without_code_changes():
    book = load_codebook(ROOT / "labels" / "medsec.yaml")
    assert book.name == "medsec"
    assert [g.id for g in book.dimension("tool").groups] == ["supply", "environment", "demand"]
    assert book.groups_of("tool", ["joint_procurement"]) == ["demand"]
    assert len(book.dimension("objective").labels) >= 3


BAD = {
    "duplicate id": ("schema: x\ndimensions:\n  - id: a\n    labels:\n      - {id: dup}\n      - {id: dup}\n", "duplicate id 'dup'"),
    "empty dimension": ("schema: x\ndimensions:\n  - id: a\n", "empty dimension"),
    "group without labels": ("schema: x\ndimensions:\n  - id: a\n    groups:\n      - {id: g, labels: []}\n", "group 'g' has no labels"),
    "unknown key": ("schema: x\ndimensions:\n  - id: a\n    colour: red\n    labels: [{id: b}]\n", "unknown key(s) colour"),
    "bad id": ("schema: x\ndimensions:\n  - id: a\n    labels: [{id: 'Not OK'}]\n", "lower-case ASCII key"),
    "not yaml": ("schema: [unclosed\n", "invalid YAML"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_codebooks_name_file_and_problem(tmp_path, case):
    text, message = BAD[case]
    path = tmp_path / f"{case.replace(' ', '_')}.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CodebookError) as exc:
        load_codebook(path)
    assert str(path) in str(exc.value) and message in str(exc.value)
    result = runner.invoke(app, ["labels", "validate", str(path)])
    assert result.exit_code == 2


def test_labels_cli_show_and_validate():
    result = runner.invoke(app, ["labels", "show"])
    assert result.exit_code == 0 and "talent_construction" in result.output and "人才建设" in result.output
    result = runner.invoke(app, ["labels", "validate", str(ROOT / "labels" / "medsec.yaml")])
    assert result.exit_code == 0 and "valid" in result.output
