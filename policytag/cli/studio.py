"""`policytag studio …`: the annotation round trip through a real Label Studio server."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from policytag.cli.labels import SchemaOption, load_or_exit
from policytag.console import err, out


app = typer.Typer(help="Label Studio: labeling config, project set-up, tasks, export, agreement, active learning.",
                  no_args_is_help=True)

UrlOption = typer.Option(None, "--url", envvar="LABEL_STUDIO_URL", help="Label Studio URL (env LABEL_STUDIO_URL).")
# show_envvar/show_default off: the token never appears in help output or logs.
KeyOption = typer.Option(None, "--api-key", envvar="LABEL_STUDIO_API_KEY", show_default=False, show_envvar=True,
                         help="Personal access token (env LABEL_STUDIO_API_KEY). Never printed.")
TitleOption = typer.Option("policytag", "--title", help="Project title.")


def _client(url, api_key):
    from policytag.labels.studio import StudioError, connect

    try:
        return connect(url, api_key)
    except StudioError as exc:
        _fail(exc)


def _fail(exc) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


@app.command("config")
def config(schema: Optional[Path] = SchemaOption) -> None:
    """Print the labeling config XML generated from the codebook."""
    from policytag.labels.studio import labeling_config

    print(labeling_config(load_or_exit(schema)))


@app.command("setup")
def setup(title: str = TitleOption, schema: Optional[Path] = SchemaOption, url: Optional[str] = UrlOption,
          api_key: Optional[str] = KeyOption,
          overlap: int = typer.Option(2, "--overlap", min=1, help="Annotators per overlapping task (1: no overlap, no agreement)."),
          overlap_share: float = typer.Option(0.2, "--overlap-share", min=0.01, max=1.0,
                                              help="Share of tasks labelled by --overlap annotators (the rest by one); "
                                                   "Label Studio picks them and serves them first.")) -> None:
    """Create the project, or update its labeling config if it exists (never duplicates), and set
    Label Studio's overlap so that agreement can be measured in the normal labelling flow."""
    from policytag.labels.studio import StudioError, set_overlap, setup_project

    book = load_or_exit(schema)
    try:
        ls = _client(url, api_key)
        pid, created = setup_project(ls, title, book)
        ov = set_overlap(ls, pid, overlap, overlap_share)
    except StudioError as exc:
        _fail(exc)
    out.print(f"{'created' if created else 'updated'} project {title!r} (id {pid}) with codebook {book.name} v{book.version}")
    if overlap > 1:
        out.print(f"overlap: {ov['maximum_annotations']} annotators on {ov['overlap_cohort_percentage']}% of tasks "
                  "(served first), one annotator on the rest")
    else:
        out.print("overlap: one annotator per task (no task will have two annotations to compare)")


@app.command("token")
def token(email: str = typer.Option(..., "--email", help="Your Label Studio account."),
          password: Optional[str] = typer.Option(None, "--password", envvar="LABEL_STUDIO_PASSWORD", show_default=False,
                                                 help="Account password (env LABEL_STUDIO_PASSWORD; asked for if absent)."),
          url: Optional[str] = UrlOption) -> None:
    """Create a personal access token for scripted set-ups and print it (only it, on stdout):
    `export LABEL_STUDIO_API_KEY=$(policytag studio token --email you@example.org)`."""
    from policytag.labels.studio import StudioError, create_personal_access_token

    if not url:
        _fail("set LABEL_STUDIO_URL or pass --url")
    if password is None:
        password = typer.prompt("Label Studio password", hide_input=True, err=True)
    try:
        print(create_personal_access_token(url, email, password))
    except StudioError as exc:
        _fail(exc)


@app.command("invite")
def invite(url: Optional[str] = UrlOption, api_key: Optional[str] = KeyOption) -> None:
    """Print the sign-up link that adds annotators to your Label Studio organisation."""
    from policytag.labels.studio import StudioError, invite_url

    try:
        print(invite_url(_client(url, api_key)))
    except StudioError as exc:
        _fail(exc)


@app.command("connect-backend")
def connect_backend_cmd(
        backend_url: str = typer.Option(..., "--backend-url", help="Where `policytag serve` listens, as Label Studio reaches it."),
        token: Optional[str] = typer.Option(None, "--token", envvar="POLICYTAG_API_TOKEN", show_default=False,
                                            help="The server's POLICYTAG_API_TOKEN (env POLICYTAG_API_TOKEN). Never printed."),
        name: str = typer.Option("policytag", "--name", help="The backend's title in Label Studio."),
        interactive: bool = typer.Option(True, "--interactive/--no-interactive", help="Interactive pre-annotation."),
        title: str = TitleOption, url: Optional[str] = UrlOption, api_key: Optional[str] = KeyOption) -> None:
    """Register the running `policytag serve` as the project's ML backend (HTTP Basic auth
    carrying the service token), with interactive pre-annotation and predictions on tasks that
    have none; its webhook gets the token too. Checked: Label Studio gets a test prediction."""
    from policytag.labels.studio import StudioError, connect_backend, project_id

    if not token:
        err.print("[yellow]warning[/yellow]: no POLICYTAG_API_TOKEN / --token: registering without credentials "
                  "(only for a server run open on purpose)")
    try:
        ls = _client(url, api_key)
        info = connect_backend(ls, project_id(ls, title), backend_url, token, name, interactive)
    except StudioError as exc:
        _fail(exc)
    out.print(f"{'connected' if info['created'] else 'updated'} ML backend {name!r} at {backend_url} "
              f"(model {info['model_version']}, auth {info['auth']}, interactive {'on' if info['interactive'] else 'off'})"
              + ("; test prediction OK" if info["tested"] else ""), soft_wrap=True)
    for w in info["warnings"]:
        err.print(f"[yellow]warning[/yellow]: {w}", soft_wrap=True)


@app.command("push")
def push(paragraphs: Path = typer.Argument(..., help="Paragraphs JSONL from `policytag ingest`."),
         predictions: Optional[Path] = typer.Option(None, "--predictions", help="Model directory: attach its predictions as pre-annotations."),
         title: str = TitleOption, schema: Optional[Path] = SchemaOption, url: Optional[str] = UrlOption,
         api_key: Optional[str] = KeyOption) -> None:
    """Import paragraphs as tasks; those already imported (same doc_id + paragraph_index) are skipped."""
    from policytag.labels.studio import StudioError, project_id, push_tasks, read_paragraphs

    book = load_or_exit(schema)
    try:
        records = read_paragraphs(paragraphs)
        tagger = None
        if predictions:
            from policytag.cli.predict import load_model_or_exit

            tagger = load_model_or_exit(predictions)
        ls = _client(url, api_key)
        result = push_tasks(ls, project_id(ls, title), records, book, tagger)
    except (StudioError, OSError, ValueError) as exc:
        _fail(exc)
    out.print(f"{result['imported']} task(s) imported{' with pre-annotations' if tagger else ''}, "
              f"{result['already_there']} already in the project")


@app.command("pull")
def pull(out_path: Path = typer.Option(..., "--out", help="Where to write the JSON export."),
         title: str = TitleOption, url: Optional[str] = UrlOption, api_key: Optional[str] = KeyOption,
         schema: Optional[Path] = SchemaOption) -> None:
    """Export the project's annotations (Label Studio JSON format), written atomically."""
    from policytag.files import OutputPathError, check_writable_file, write_json_atomic

    from policytag.labels.export import parse_export
    from policytag.labels.studio import StudioError, export_project, project_id

    book = load_or_exit(schema)
    try:
        check_writable_file(out_path, "--out")
    except OutputPathError as exc:
        _fail(exc)
    try:
        ls = _client(url, api_key)
        tasks = export_project(ls, project_id(ls, title))
    except StudioError as exc:
        _fail(exc)
    write_json_atomic(out_path, tasks)
    _, report = parse_export(tasks, book)
    out.print(f"{len(tasks)} task(s) → {out_path}")
    for line in report.lines():
        out.print(f"  {line}")


@app.command("agreement")
def agreement_cmd(export: Path = typer.Argument(..., help="Label Studio JSON export (from `pull` or the UI)."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
                  schema: Optional[Path] = SchemaOption, top: int = typer.Option(10, help="How many disputed tasks to list.")) -> None:
    """Inter-annotator agreement on tasks with two or more annotations."""
    from policytag.labels.agreement import agreement
    from policytag.labels.export import load_export

    book = load_or_exit(schema)
    try:
        tasks = load_export(export)
    except (OSError, ValueError) as exc:
        _fail(exc)
    result = agreement(tasks, book, top)
    if result["malformed_tasks"]:
        err.print(f"skipped {result['malformed_tasks']} malformed task(s) of {len(tasks)}:", markup=False)
        for why, n in sorted(result["malformed_reasons"].items()):
            err.print(f"  {n} × {why}", markup=False, soft_wrap=True)
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    if not result["tasks_with_two_or_more"]:
        out.print("no task has two or more annotations: nothing to compare")
        return
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    summary = Table(title=f"agreement over {result['tasks_with_two_or_more']} tasks", show_header=False)
    summary.add_row("mean per-label Cohen's kappa", fmt(result["kappa_mean"]))
    summary.add_row("6D paper (two coders)", fmt(result["paper_kappa_mean"]))
    summary.add_row("exact match of whole label sets", fmt(result["exact_match"]))
    for dim, alpha in result["alpha_masi"].items():
        summary.add_row(f"Krippendorff's alpha (MASI) — {dim}", fmt(alpha))
    out.print(summary)
    per = Table(title="per-label kappa")
    per.add_column("label")
    per.add_column("kappa", justify="right")
    for label, k in sorted(result["per_label_kappa"].items(), key=lambda kv: kv[1]):
        per.add_row(label, f"{k:.3f}")
    out.print(per)
    if result["disputed"]:
        dis = Table(title="most disputed tasks: who chose what")
        for col in ("task", "distance", "text", "annotator", "labels"):
            # an email is never broken across lines, so it can be searched and copied
            dis.add_column(col, overflow="fold", no_wrap=col == "annotator", min_width=8 if col == "text" else None)
        for d in result["disputed"]:
            for i, (who, labels) in enumerate(sorted(d["labels"].items())):
                chosen = "; ".join(f"{dim}: {', '.join(v)}" for dim, v in labels.items() if v) or "(nothing)"
                dis.add_row(str(d["task"]) if i == 0 else "", f"{d['distance']:.3f}" if i == 0 else "",
                            d["text"] if i == 0 else "", who, chosen)
        out.print(dis)


@app.command("suggest")
def suggest(model: Path = typer.Option(..., "--model", help="Model directory."), n: int = typer.Option(50, "--n", min=1),
            title: str = TitleOption, url: Optional[str] = UrlOption, api_key: Optional[str] = KeyOption,
            out_path: Optional[Path] = typer.Option(None, "--out", help="Also write the suggestions as JSON.")) -> None:
    """The unlabeled tasks the model is least sure about (active learning): label these first.
    Tasks already annotated or skipped are left out.

    In Label Studio's Data Manager, filter on these task ids, or sort by prediction score
    ascending: `push --predictions` stores the same confidence as each prediction's score."""
    from policytag.cli.predict import load_model_or_exit
    from policytag.files import OutputPathError, check_writable_file, write_json_atomic

    from policytag.labels.studio import StudioError, confidence, model_text, project_id, unlabeled_tasks

    try:
        if out_path is not None:
            check_writable_file(out_path, "--out")
    except OutputPathError as exc:
        _fail(exc)
    tagger = load_model_or_exit(model)
    try:
        ls = _client(url, api_key)
        tasks = unlabeled_tasks(ls, project_id(ls, title))
    except (StudioError, OSError, ValueError) as exc:
        _fail(exc)
    if not tasks:
        out.print("every task is annotated or skipped")
        return
    probs = tagger.predict_proba([model_text(t.data) for t in tasks], [(t.data or {}).get("title") for t in tasks])
    scored = sorted(((confidence(p, tagger.thresholds), t) for p, t in zip(probs, tasks)), key=lambda x: (x[0], x[1].id))[:n]
    table = Table(title=f"{len(scored)} least certain of {len(tasks)} unlabeled tasks (skipped ones left out)")
    for col in ("task", "confidence", "text"):
        table.add_column(col, overflow="fold")
    for conf, t in scored:
        table.add_row(str(t.id), f"{conf:.3f}", (t.data or {}).get("text", "")[:70])
    out.print(table)
    out.print("task ids: " + ",".join(str(t.id) for _, t in scored))
    if out_path:
        write_json_atomic(out_path, [{"task": t.id, "confidence": c, "text": (t.data or {}).get("text", "")} for c, t in scored])
