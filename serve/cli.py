"""`policytag serve`: run the tagging service with uvicorn."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def serve(
    model: Path = typer.Option(..., "--model", help="Model directory to serve."),
    host: str = typer.Option("127.0.0.1", help="Bind address (loopback by default)."),
    port: int = typer.Option(8000),
    backend: str = typer.Option("torch", help="torch, or onnx (int8) / onnx-fp32 after `policytag export-onnx`."),
    max_paragraphs: Optional[int] = typer.Option(None, help="Paragraphs per request (env POLICYTAG_MAX_PARAGRAPHS, default 500)."),
    max_chars: Optional[int] = typer.Option(None, help="Characters per paragraph (env POLICYTAG_MAX_CHARS, default 5000)."),
    max_body_bytes: Optional[int] = typer.Option(None, help="Request body size (env POLICYTAG_MAX_BODY_BYTES, default 2 MB)."),
    retrain_after: Optional[int] = typer.Option(None, help="Retrain in the background after this many new Label Studio "
                                                           "annotations (env POLICYTAG_RETRAIN_AFTER; 0 = never)."),
) -> None:
    """Serve /v1/tag, /v1/schema, health checks and the Label Studio ML backend routes.

    Set POLICYTAG_API_TOKEN to require 'Authorization: Bearer <token>' on every route but health checks."""
    import uvicorn

    from .app import Settings, create_app

    if not (model / "policytag.json").exists():
        typer.echo(f"{model}: not a policytag model directory", err=True)
        raise typer.Exit(2)
    if backend not in ("torch", "onnx", "onnx-fp32"):
        typer.echo("--backend must be torch, onnx or onnx-fp32", err=True)
        raise typer.Exit(2)
    settings = Settings.from_env(model, backend=backend, max_paragraphs=max_paragraphs, max_chars=max_chars, max_body_bytes=max_body_bytes,
                                 min_new_annotations=retrain_after)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
