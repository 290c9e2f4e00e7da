"""The `policytag` command line: one Typer app assembling each folder's commands."""
from __future__ import annotations

import typer

from labels.cli import app as labels_app
from labels.studio_cli import app as studio_app
from nlp.cli import ingest
from models.cli import export_onnx_cmd, predict
from report.cli import report
from serve.cli import serve
from training.cli import evaluate_cmd, train

app = typer.Typer(
    name="policytag",
    help="Tag paragraphs of Chinese health-policy documents with policy tools, stakeholders and orientations.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(labels_app, name="labels")
app.add_typer(studio_app, name="studio")
app.command("ingest")(ingest)
app.command("train")(train)
app.command("evaluate")(evaluate_cmd)
app.command("predict")(predict)
app.command("export-onnx")(export_onnx_cmd)
app.command("serve")(serve)
app.command("report")(report)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
