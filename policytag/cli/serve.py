"""`policytag serve`: run the tagging service with uvicorn."""
from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Optional

import typer

from policytag.models.tagger import Runtime


def is_loopback(host: str) -> bool:
    """True when `host` only ever answers this machine (127.0.0.0/8, ::1, localhost); a name
    counts only if every address it resolves to is loopback."""
    host = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def serve(
    model: Path = typer.Option(..., "--model", help="Model directory to serve."),
    host: str = typer.Option("127.0.0.1", help="Bind address (loopback by default)."),
    port: int = typer.Option(8000),
    backend: Runtime = typer.Option(Runtime.torch, help="torch, or onnx (int8) / onnx-fp32 after `policytag export-onnx`."),
    max_paragraphs: Optional[int] = typer.Option(None, help="Paragraphs per request (env POLICYTAG_MAX_PARAGRAPHS, default 500)."),
    max_chars: Optional[int] = typer.Option(None, help="Characters per paragraph (env POLICYTAG_MAX_CHARS, default 5000)."),
    max_body_bytes: Optional[int] = typer.Option(None, help="Request body size (env POLICYTAG_MAX_BODY_BYTES, default 2 MB)."),
    retrain_after: Optional[int] = typer.Option(None, help="Retrain in the background after this many new Label Studio "
                                                           "annotations (env POLICYTAG_RETRAIN_AFTER; 0 = never)."),
    allow_open: bool = typer.Option(False, "--allow-open", envvar="POLICYTAG_ALLOW_OPEN",
                                    help="Serve a non-loopback --host without POLICYTAG_API_TOKEN, open to anyone who can "
                                         "reach it (refused otherwise)."),
) -> None:
    """Serve /v1/tag, /v1/schema, health checks and the Label Studio ML backend routes.

    Set POLICYTAG_API_TOKEN to require 'Authorization: Bearer <token>' on every route but health checks.
    Without a token, a non-loopback --host is refused unless --allow-open is given."""
    import uvicorn

    from policytag.cli.predict import load_model_or_exit

    from policytag.serve.app import Settings, create_app

    if not (model / "policytag.json").exists():
        typer.echo(f"error: {model}: not a policytag model directory (no policytag.json)", err=True)
        raise typer.Exit(2)
    backend = backend.value
    token = os.environ.get("POLICYTAG_API_TOKEN") or None
    if token is None:
        where = f"{host}:{port}"
        if not is_loopback(host):
            if not allow_open:
                typer.echo(f"error: refusing to serve on {where} without a token: anyone on the network could use it. "
                           "Set POLICYTAG_API_TOKEN, or pass --allow-open to run open on purpose.", err=True)
                raise typer.Exit(2)
            typer.echo(f"WARNING: serving OPEN on {where} (--allow-open): no token is required, anyone who can reach "
                       "this address can use every route. Set POLICYTAG_API_TOKEN to require one.", err=True)
        else:
            typer.echo(f"warning: POLICYTAG_API_TOKEN is not set: every program on this machine can use {where} "
                       "without a token.", err=True)
    settings = Settings.from_env(model, backend=backend, max_paragraphs=max_paragraphs, max_chars=max_chars, max_body_bytes=max_body_bytes,
                                 min_new_annotations=retrain_after)
    tagger = load_model_or_exit(model, backend)  # a damaged model: one line here, not a start-up traceback
    uvicorn.run(create_app(settings, tagger), host=host, port=port, log_level="info")
