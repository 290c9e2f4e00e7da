"""The `policytag` command line: one Typer app assembling each folder's commands.

Every command runs inside one error handler (`ReportingGroup`): file-system and decoding
errors that a command did not handle itself end it with a one-line message naming the path
(exit 2) instead of a traceback, and Ctrl-C ends it with a word and exit code 130."""
from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from policytag.cli.ingest import ingest
from policytag.cli.labels import app as labels_app
from policytag.cli.predict import export_onnx_cmd, predict
from policytag.cli.report import report
from policytag.cli.serve import serve
from policytag.cli.studio import app as studio_app
from policytag.cli.train import evaluate_cmd, train


def _handled_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, UnicodeError, MemoryError]
    try:
        from safetensors import SafetensorError  # a weights file cut short or corrupted

        errors.append(SafetensorError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


class ReportingGroup(TyperGroup):
    """Turns the errors users cause (a bad path, a full disk, a damaged file, Ctrl-C) into one
    line on stderr and an exit code; programming errors still show their traceback."""

    def invoke(self, ctx):
        from policytag.files import describe_error

        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            print("\ninterrupted (Ctrl-C): stopped; outputs are written atomically, so no output file was left "
                  "half-written", file=sys.stderr)
            raise typer.Exit(130)
        except _handled_errors() as exc:
            if isinstance(exc, BrokenPipeError):  # `policytag … | head`: the reader went away
                raise typer.Exit(141)
            print(f"error: {describe_error(exc)}", file=sys.stderr)
            raise typer.Exit(2)


app = typer.Typer(
    name="policytag",
    cls=ReportingGroup,
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
