"""Training end to end on a tiny BERT built here (seconds), plus the pieces on their own."""
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from policytag.labels.export import parse_export
from policytag.labels.schema import load_codebook
from policytag.models.tagger import load_model
from policytag.cli import app
from policytag.training.cv import CVRun, cross_fitted_metrics, document_folds, learn_tfidf_weight, usable_folds
from policytag.training.data import to_arrays
from policytag.training.metrics import choose_thresholds, evaluate, global_threshold, tune_thresholds
from policytag.training.fit import write_model_dir

from conftest import shared_path

runner = CliRunner()
BOOK = load_codebook()
METRIC_KEYS = {"micro_f1", "macro_f1", "micro_precision", "micro_recall", "per_label"}


@pytest.fixture(scope="session")
def small_export(tmp_path_factory):
    """The first 160 tasks of the shared export (about 30 documents)."""
    tasks = json.loads(shared_path("data", "annotations", "ihms-train.json").read_text(encoding="utf-8"))
    path = tmp_path_factory.mktemp("data") / "small.json"
    path.write_text(json.dumps(tasks[:160], ensure_ascii=False), encoding="utf-8")
    return path


def train_cli(args):
    return runner.invoke(app, ["train", *map(str, args)])


def test_tiny_model_trains_end_to_end_and_metrics_have_the_contract_shape(tiny_model, small_export, tmp_path):
    out = tmp_path / "model"
    result = train_cli(["--data", small_export, "--base-model", tiny_model, "--out", out, "--epochs", 1, "--max-length", 64])
    assert result.exit_code == 0, result.output
    assert re.search(r"\d+ training paragraph\(s\) longer than 64 tokens: training reads their first window; "
                     r"tagging reads them in overlapping windows", result.output)
    assert re.search(r"\d+\.\d examples/s", result.output)
    # after each fold, the time the rest will take at that fold's speed (3 folds, then the final model)
    assert re.search(r"fold 1/3 took .+; 2 more fold\(s\) and the final model: (about \d+ min|under a minute) more at this speed", result.output)
    assert re.search(r"fold 3/3 took .+; the final model: (about \d+ min|under a minute) more at this speed", result.output)
    for name in ("policytag.json", "codebook.yaml", "thresholds.json", "training_config.json", "metrics.json",
                 "MODEL_CARD.md", "head.safetensors", "encoder/config.json"):
        assert (out / name).exists(), name
    assert not (tmp_path / "model.checkpoint").exists()
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "overlapping 64-token windows" in card and "| tool | talent_construction |" in card
    metrics_path = tmp_path / "metrics.json"
    result = runner.invoke(app, ["evaluate", "--model", str(out), "--data", str(small_export),
                                 "--output", str(metrics_path), "--report", str(tmp_path / "r.md")])
    assert result.exit_code == 0, result.output
    metrics = json.loads(metrics_path.read_text())
    assert set(metrics) == {"n_paragraphs", "model", "dimensions", "kappa_mean"}
    assert metrics["n_paragraphs"] == 160
    assert set(metrics["dimensions"]) == {"tool", "tool_group", "stakeholder", "orientation"}
    for block in metrics["dimensions"].values():
        assert set(block) == METRIC_KEYS
        assert all(set(v) == {"precision", "recall", "f1", "support"} for v in block["per_label"].values())
    assert set(metrics["dimensions"]["tool"]["per_label"]) == set(BOOK.dimension("tool").label_ids)
    assert set(metrics["dimensions"]["tool_group"]["per_label"]) == {"supply", "demand", "environment"}
    # the default ensemble: the encoder reads the paragraph alone; the title moves orientation only
    tagger = load_model(out)
    a = tagger.predict_proba(["推进家庭医生签约服务。"], ["关于推进分级诊疗制度建设的指导意见"])
    b = tagger.predict_proba(["推进家庭医生签约服务。"])
    moved = {tagger.labels[j][0] for j in np.flatnonzero(~np.isclose(a[0], b[0], rtol=0, atol=1e-7))}
    assert moved == {"orientation"}


def test_card_and_metrics_are_out_of_fold(tiny_model, small_export, tmp_path):
    out = tmp_path / "m"
    result = train_cli(["--data", small_export, "--base-model", tiny_model, "--out", out, "--epochs", 1,
                        "--max-length", 48, "--cv", 3, "--context", "title", "--tfidf-weight", "learned"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "policytag.json").read_text())
    assert config["kind"] == "ensemble" and config["context"] == "title"
    assert [m["kind"] for m in config["members"]] == ["transformer", "tfidf"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cv"]["folds"] == 3 and metrics["n_paragraphs"] == 160  # every paragraph scored out of fold
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "3-fold cross-validation over documents" in card and " ± " in card
    assert "### Members alone" in card
    # the run's time on screen is the whole run's, as in the card (not the last fine-tuning alone)
    said = int(re.search(r"model written to .* in (\d+) s", result.output).group(1))
    assert abs(said - int(re.search(r"Training time: (\d+) s in all", card).group(1))) <= 1
    assert len(set(load_model(out).thresholds.tolist())) == 1  # the default: one threshold for every label
    assert "one threshold for every label" in card
    learned = json.loads((out / "training_config.json").read_text())["tfidf_weight"]
    assert 0.0 <= learned <= 1.0 and "learned out of fold" in card  # the ensemble weight was learned, not set
    assert [m["weight"] for m in config["members"]] == pytest.approx([1 - learned, learned])
    tagger = load_model(out)
    a = tagger.predict_proba(["推进家庭医生签约服务。"], ["关于推进分级诊疗制度建设的指导意见"])
    b = tagger.predict_proba(["推进家庭医生签约服务。"])
    assert a.shape == b.shape == (1, 28) and not np.allclose(a, b)  # the title is read
    from policytag.models.onnx import export_onnx

    export_onnx(load_model(out, device="cpu"))  # an ensemble exports its encoder member
    onnx = load_model(out, backend="onnx-fp32").predict_proba(["推进家庭医生签约服务。"], ["关于推进分级诊疗制度建设的指导意见"])
    assert np.allclose(a, onnx, atol=1e-4)


def test_one_document_trains_without_an_estimate_and_says_so(small_export, tmp_path):
    tasks = json.loads(small_export.read_text())
    title = "中华人民共和国医师法"  # 12 paragraphs of one law
    one = tmp_path / "one.json"
    one.write_text(json.dumps([t for t in tasks if t["data"]["title"] == title], ensure_ascii=False))
    result = train_cli(["--model", "tfidf", "--data", one, "--out", tmp_path / "m"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "NO held-out estimate" in said and "annotate paragraphs from at least 2 more documents" in said
    assert json.loads((tmp_path / "m" / "thresholds.json").read_text())["talent_construction"] == 0.5
    assert "No out-of-fold estimate" in (tmp_path / "m" / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_evaluate_cv_prints_mean_and_sd_with_the_baseline(small_export, tmp_path):
    out = tmp_path / "cv.json"
    result = runner.invoke(app, ["evaluate", "--cv", "3", "--data", str(small_export), "--output", str(out),
                                 "--report", str(tmp_path / "cv.md")])
    assert result.exit_code == 0, result.output
    models = json.loads(out.read_text())["models"]
    assert set(models) == {"tfidf baseline"}
    m = models["tfidf baseline"]
    assert set(m) >= {"n_paragraphs", "model", "dimensions", "kappa_mean", "cv"} and m["n_paragraphs"] == 160
    assert len(m["cv"]["per_fold"]) == 3 and "±" in (tmp_path / "cv.md").read_text(encoding="utf-8")
    tasks = json.loads(small_export.read_text())
    two = tmp_path / "two.json"
    titles = sorted({t["data"]["title"] for t in tasks})[:2]
    two.write_text(json.dumps([t for t in tasks if t["data"]["title"] in titles], ensure_ascii=False))
    result = runner.invoke(app, ["evaluate", "--cv", "5", "--data", str(two)])
    assert result.exit_code == 2 and "at least 5 documents, got 2" in " ".join(result.output.split())


def test_baseline_saved_the_same_way(small_export, tmp_path):
    out = tmp_path / "tfidf"
    result = train_cli(["--baseline", "tfidf", "--data", small_export, "--out", out])
    assert result.exit_code == 0, result.output
    tagger = load_model(out)
    probs = tagger.predict_proba(["推进家庭医生签约服务，引导居民基层首诊。"])
    assert probs.shape == (1, 28)
    pred = tagger.decode(probs[0])
    # hierarchy: groups follow the predicted sub-tools exactly
    assert pred.groups["tool"] == BOOK.groups_of("tool", pred.labels["tool"])


def test_tfidf_reads_the_title_for_orientation_only(small_export, tmp_path):
    orientation = [j for j, (dim, _) in enumerate(BOOK.flat_labels) if dim == "orientation"]
    others = [j for j in range(len(BOOK.flat_labels)) if j not in orientation]
    text, title = ["推进家庭医生签约服务，建设健康社区。"], ["关于推进分级诊疗制度建设的指导意见"]
    result = train_cli(["--model", "tfidf", "--cv", 0, "--data", small_export, "--out", tmp_path / "default"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "default" / "policytag.json").read_text())["tfidf_title"] == ["orientation"]
    assert "TF-IDF for orientation: a second one reads the document title" in (tmp_path / "default" / "MODEL_CARD.md").read_text(encoding="utf-8")
    tagger = load_model(tmp_path / "default")
    with_title, without = tagger.predict_proba(text, title), tagger.predict_proba(text)
    assert np.array_equal(with_title[:, others], without[:, others])  # only orientation reads the title
    assert not np.allclose(with_title[:, orientation], without[:, orientation])
    result = train_cli(["--model", "tfidf", "--cv", 0, "--data", small_export, "--out", tmp_path / "none", "--tfidf-title", "none"])
    assert result.exit_code == 0, result.output
    plain = load_model(tmp_path / "none")
    assert "tfidf_title" not in plain.config and not (tmp_path / "none" / "tfidf-title.joblib").exists()
    # no title known: the paragraph-only model answers, for orientation too
    assert np.array_equal(plain.predict_proba(text, title), without)
    result = train_cli(["--model", "tfidf", "--data", small_export, "--out", tmp_path / "bad", "--tfidf-title", "objective"])
    assert result.exit_code == 2 and "objective is not a dimension of the codebook" in " ".join(result.output.split())
    # an export without titles: nothing to read, and the model says so instead of claiming a title model
    tasks = json.loads(small_export.read_text())
    for t in tasks:
        t["data"].pop("title", None)
    untitled = tmp_path / "untitled.json"
    untitled.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    result = train_cli(["--model", "tfidf", "--cv", 0, "--data", untitled, "--out", tmp_path / "untitled"])
    assert result.exit_code == 0, result.output
    assert "no document titles in the data" in " ".join(result.output.split())
    card = (tmp_path / "untitled" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "no document titles in the data" in card and "a second one reads the document title" not in card
    assert "tfidf_title" not in load_model(tmp_path / "untitled").config


def test_a_one_label_dimension_can_read_the_title():
    """scikit-learn fits a single label as one binary problem (two probability columns)."""
    from policytag.models.baseline import fit_tfidf
    from policytag.models.tagger import TfidfBackend, tfidf_input

    texts = ["推进分级诊疗", "建设健康社区", "发展智慧医疗", "完善医保支付"] * 3
    titles = ["分级诊疗意见", "健康社区方案", "智慧医疗规划", "医保办法"] * 3
    y = np.zeros((len(texts), 3), dtype=np.float32)
    y[::4, 2] = 1
    backend = TfidfBackend(fit_tfidf(texts, y), False, fit_tfidf([tfidf_input(t, c) for t, c in zip(texts, titles)], y[:, [2]]), [2])
    probs = backend.predict_proba(texts[:4], titles[:4])
    assert probs.shape == (4, 3) and probs[0, 2] > probs[1, 2]


def test_threshold_tuning_shrinks_toward_one_global_threshold():
    rng = np.random.default_rng(0)
    n = 400
    y = np.zeros((n, 3))
    y[:200, 0] = 1  # common label, best cut near 0.3
    y[:4, 1] = 1  # rare label: 4 positives
    y[:100, 2] = 1
    p = rng.uniform(0.0, 0.25, (n, 3))
    p[:200, 0] = rng.uniform(0.3, 0.6, 200)
    p[:4, 1] = 0.12  # a threshold fitted to these four would be 0.1
    p[:100, 2] = rng.uniform(0.55, 0.9, 100)
    t = tune_thresholds(y, p)
    g = tune_thresholds(y, p, min_positives=10**9)[0]  # every label kept at the global value
    assert np.allclose(tune_thresholds(y, p, min_positives=10**9), g)
    assert t[1] == pytest.approx(g)  # fewer than 10 positives: the global threshold
    # many positives: pulled toward the label's own optimum, but not all the way
    own = tune_thresholds(y[:, :1], p[:, :1], prior=0.0)[0]
    assert min(own, g) - 1e-6 <= t[0] <= max(own, g) + 1e-6
    assert abs(t[0] - own) < abs(g - own) or own == g


def test_threshold_policies():
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=(300, 4)) < 0.3).astype(float)
    p = np.clip(0.6 * y + rng.uniform(0.0, 0.5, y.shape), 0, 1)
    g = choose_thresholds(y, p, "global")
    assert len(set(g.tolist())) == 1 and g[0] == global_threshold(y, p)
    assert np.allclose(choose_thresholds(y, p, "per-label"), tune_thresholds(y, p))
    assert np.allclose(choose_thresholds(y, p, "flat"), 0.5)
    with pytest.raises(ValueError, match="thresholds must be one of global, per-label, flat"):
        choose_thresholds(y, p, "tuned")


def test_a_bad_threshold_policy_is_refused_before_training(small_export, tmp_path):
    result = train_cli(["--data", small_export, "--model", "tfidf", "--out", tmp_path / "m", "--thresholds", "tuned"])
    assert result.exit_code == 2 and "--thresholds must be one of global, per-label, flat" in result.output
    assert not (tmp_path / "m").exists()


def test_cross_fitted_metrics_never_tune_on_the_scored_fold():
    """A label whose scores flip between folds: thresholds tuned on the scored fold itself would
    be perfect; cross-fitted ones (tuned on the other fold) must not be."""
    flat = BOOK.flat_labels
    y = np.zeros((40, len(flat)))
    y[::2, 0] = 1
    p = np.full((40, len(flat)), 0.01)
    fold = np.repeat([0, 1], 20)
    p[:20, 0] = np.where(y[:20, 0] > 0, 0.9, 0.6)  # fold 0: positives high
    p[20:, 0] = np.where(y[20:, 0] > 0, 0.2, 0.1)  # fold 1: everything low
    m = cross_fitted_metrics(BOOK, y, p, fold)
    per_fold = [f["dimensions"]["tool"]["per_label"][flat[0][1]]["f1"] for f in m["cv"]["per_fold"]]
    assert per_fold[1] < 1.0
    assert set(m["cv"]["mean"]) == {"dimensions", "kappa_mean"} and m["cv"]["folds"] == 2


def test_ensemble_weight_goes_to_the_member_that_ranks_better():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 4)) < 0.3).astype(float)
    good = np.clip(y * 0.6 + rng.random(y.shape) * 0.5, 0, 1)
    noise = rng.random(y.shape)
    assert learn_tfidf_weight(y, noise, good) > 0.5  # TF-IDF ranks better: it gets the larger share
    assert learn_tfidf_weight(y, good, noise) < 0.5
    assert learn_tfidf_weight(y, good, good) == 0.5  # a tie keeps the plain mean


def test_a_learned_ensemble_weight_is_learned_without_the_scored_fold():
    """Fold 0: the encoder is right and TF-IDF is noise; fold 1: the reverse. Learned on the scored
    fold, the weight would pick the right member each time; learned on the other fold it picks
    the wrong one, and the cross-fitted figures must show that."""
    from policytag.training.train import TrainConfig

    rng = np.random.default_rng(1)
    flat = BOOK.flat_labels
    y = (rng.random((200, len(flat))) < 0.3).astype(float)
    fold = np.repeat([0, 1], 100)
    right, noise = y * 0.8 + 0.1, rng.random(y.shape)
    enc = np.where(fold[:, None] == 0, right, noise)
    tfidf = np.where(fold[:, None] == 1, right, noise)
    run = CVRun(fold, {"encoder": enc, "tfidf": tfidf}, {})
    honest = cross_fitted_metrics(BOOK, y, run.mixer(TrainConfig(model="ensemble", tfidf_weight=None), y), fold)
    fixed = cross_fitted_metrics(BOOK, y, run.mixer(TrainConfig(model="ensemble", tfidf_weight=0.5), y), fold)
    learned_on_all = learn_tfidf_weight(y, enc, tfidf)
    assert honest["cv"]["mean"]["dimensions"]["tool"]["micro_f1"] < fixed["cv"]["mean"]["dimensions"]["tool"]["micro_f1"]
    assert 0.3 <= learned_on_all <= 0.7  # over both folds neither member wins outright


@pytest.mark.parametrize("weight", ["2", "half"])
def test_a_bad_ensemble_weight_is_refused_before_training(small_export, tmp_path, weight):
    result = train_cli(["--data", small_export, "--model", "tfidf", "--out", tmp_path / "m", "--tfidf-weight", weight])
    assert result.exit_code == 2 and "--tfidf-weight must be a number from 0 to 1 or 'learned'" in result.output
    assert not (tmp_path / "m").exists()


def test_bf16_fine_tuning_trains_and_the_card_says_so(tiny_model, small_export, tmp_path):
    import torch

    from policytag.training import train

    train._warned_bf16.clear()
    out = tmp_path / "model"
    result = train_cli(["--data", small_export, "--base-model", tiny_model, "--out", out, "--epochs", 1,
                        "--max-length", 64, "--cv", 0, "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert "examples/s, bf16)" in result.output
    # where the CPU has no bf16 arithmetic, the user is told it is emulated, and how to avoid it
    assert ("bf16 is emulated" in result.output) == (not train.native_bf16(torch.device("cpu")))
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "bf16 mixed precision arithmetic" in card
    assert "0.5 for every label: no out-of-fold predictions" in card  # --cv 0: nothing to choose them from
    probs = load_model(out).predict_proba(["加强基层医疗卫生人才队伍建设。"])
    assert probs.dtype == np.float32 and np.isfinite(probs).all()  # the saved weights are fp32 as ever


def test_a_bad_precision_is_refused_before_training(small_export, tmp_path):
    result = train_cli(["--data", small_export, "--model", "tfidf", "--out", tmp_path / "m", "--precision", "fp8"])
    assert result.exit_code == 2 and "--precision must be one of auto, fp32, bf16" in result.output
    assert not (tmp_path / "m").exists()


def test_hierarchy_groups_derived_in_metrics():
    flat = BOOK.flat_labels
    y = np.zeros((2, len(flat)))
    pred = np.zeros((2, len(flat)))
    j = [l for _, l in flat].index
    y[0, j("talent_construction")] = 1
    pred[0, j("financial_guarantee")] = 1  # wrong sub-tool, right group
    m = evaluate(BOOK, flat, y, pred)
    assert m["dimensions"]["tool"]["micro_f1"] == 0.0
    assert m["dimensions"]["tool_group"]["per_label"]["supply"]["f1"] == 1.0


def test_folds_are_grouped_by_document_and_stratified():
    examples, _ = parse_export(shared_path("data", "annotations", "ihms-train.json"), BOOK)
    texts, y, groups = to_arrays(examples, BOOK)
    fold = document_folds(y, groups, 5, seed=1)
    assert set(fold) == set(range(5))
    for g in set(groups):  # a document never straddles folds
        assert len(set(fold[[i for i, x in enumerate(groups) if x == g]])) == 1
    # The export cuts one document into several doc_ids (pages): they are one document here.
    by_title = {}
    for ex, f in zip(examples, fold):
        by_title.setdefault(ex.meta["title"], set()).add(f)
    assert all(len(fs) == 1 for fs in by_title.values())
    # every label present in at least two documents reaches the training side of every fold
    for j in range(y.shape[1]):
        docs = {groups[i] for i in np.flatnonzero(y[:, j])}
        if len(docs) >= 2:
            assert all(y[fold != f, j].sum() > 0 for f in range(5))
    assert np.array_equal(document_folds(y, groups, 5, seed=1), fold)  # deterministic with a seed


def test_too_few_documents_for_the_folds_is_a_clear_message():
    assert usable_folds(["a", "a"], 5)[0] == 0 and "one document" in usable_folds(["a", "a"], 5)[1]
    k, why = usable_folds(["a", "b", "c"], 5)
    assert k == 3 and "2 more document" in why
    with pytest.raises(ValueError, match="at least 5 documents"):
        document_folds(np.ones((3, 2)), ["a", "b", "c"], 5)


def test_atomic_save_keeps_the_old_model_on_failure(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "weights").write_text("old")

    def broken(d: Path):
        (d / "weights").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_model_dir(out, broken)
    assert (out / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_bad_training_data(tmp_path, small_export):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    result = train_cli(["--baseline", "tfidf", "--data", empty, "--out", tmp_path / "x"])
    assert result.exit_code == 2 and "no annotated paragraphs" in result.output
    tasks = json.loads(small_export.read_text())
    for t in tasks:
        for a in t["annotations"]:
            a["result"] = []
    none = tmp_path / "none.json"
    none.write_text(json.dumps(tasks))
    result = train_cli(["--baseline", "tfidf", "--data", none, "--out", tmp_path / "x"])
    assert result.exit_code == 2 and "one class only" in result.output
    tasks = json.loads(small_export.read_text())
    tasks[0]["annotations"][0]["result"].append(
        {"from_name": "stakeholder", "type": "choices", "value": {"choices": ["aliens"]}})
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps(tasks))
    result = train_cli(["--baseline", "tfidf", "--data", unknown, "--out", tmp_path / "x"])
    assert result.exit_code == 0 and "unknown label 'stakeholder:aliens'" in result.output
    assert "has no positive example" in result.output
    assert not (tmp_path / "x.checkpoint").exists()


def test_interrupt_and_resume_reproduce_an_uninterrupted_run(tiny_model, small_export, tmp_path):
    exe = shutil.which("policytag") or str(Path(sys.executable).with_name("policytag"))
    common = ["train", "--data", str(small_export), "--base-model", str(tiny_model), "--epochs", "3",
              "--max-length", "64", "--checkpoint-every", "2", "--seed", "5", "--cv", "2"]
    full = subprocess.run([exe, *common, "--out", str(tmp_path / "full")], capture_output=True, text=True)
    assert full.returncode == 0, full.stderr[-2000:]

    out = tmp_path / "resumed"
    proc = subprocess.Popen([exe, *common, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "resumed.checkpoint"
    deadline = time.time() + 120
    while not list(ckpt.glob("*.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("training finished before the interrupt landed")
    assert proc.returncode == 130, stderr[-2000:]
    assert "rerun with --resume" in stderr and not out.exists()
    again = subprocess.run([exe, *common, "--out", str(out), "--resume"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert re.search(r"resuming .* from step", again.stderr)

    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "full" / "head.safetensors")), load_file(str(out / "head.safetensors"))
    for k in a:
        assert np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-5), k


def test_train_requires_a_base_model(small_export, tmp_path):
    result = train_cli(["--data", small_export, "--out", tmp_path / "m"])
    assert result.exit_code == 2 and "--base-model is required" in result.output


def test_onnx_export_matches_torch(tiny_model, small_export, tmp_path):
    out = tmp_path / "model"
    assert train_cli(["--data", small_export, "--base-model", tiny_model, "--out", out, "--epochs", 1, "--max-length", 64]).exit_code == 0
    result = runner.invoke(app, ["export-onnx", "--model", str(out)])
    assert result.exit_code == 0, result.output
    texts = ["推进家庭医生签约服务。", "加强基层医疗卫生机构人才队伍建设，落实全科医生培养。", "一、总体要求"]
    torch_probs = load_model(out).predict_proba(texts)
    fp32 = load_model(out, backend="onnx-fp32").predict_proba(texts)
    int8 = load_model(out, backend="onnx").predict_proba(texts)
    assert np.allclose(torch_probs, fp32, atol=1e-4)
    assert np.abs(torch_probs - int8).max() < 0.2  # quantised: close, not equal
    tfidf = tmp_path / "tfidf"
    assert train_cli(["--baseline", "tfidf", "--data", small_export, "--out", tfidf]).exit_code == 0
    assert runner.invoke(app, ["export-onnx", "--model", str(tfidf)]).exit_code == 2
    # the service can serve the int8 export too
    from fastapi.testclient import TestClient

    from policytag.serve.app import Settings, create_app

    with TestClient(create_app(Settings(model_dir=out, backend="onnx"))) as client:
        body = client.post("/v1/tag", json={"paragraphs": texts}).json()
    assert [p["probabilities"]["talent_construction"] for p in body["paragraphs"]] == pytest.approx(
        [float(x) for x in int8[:, [l for _, l in load_model(out).labels].index("talent_construction")]], abs=1e-4)


def test_word_embeddings_are_fine_tuned_by_default_and_frozen_on_request(tiny_model):
    """The default recipe trains the word embeddings (it scored higher in cross-validation);
    --freeze-embeddings keeps them fixed and trains everything else."""
    import torch

    from policytag.training.train import TrainConfig, build_encoder

    for freeze in (False, True):
        cfg = TrainConfig(base_model=str(tiny_model)) if not freeze else TrainConfig(base_model=str(tiny_model),
                                                                                     freeze_embeddings=True)
        _, model = build_encoder(cfg, BOOK, len(BOOK.flat_labels), torch.device("cpu"))
        words = model.encoder.get_input_embeddings().weight
        assert words.requires_grad is not freeze
        assert all(p.requires_grad for n, p in model.named_parameters() if "word_embeddings" not in n)


def test_frozen_layers_continue_the_forward_pass_exactly(tiny_model):
    """The training shortcut (lower layers run once, the rest per step) computes what the full
    model computes, padding included; the saved model is the plain one."""
    import torch

    from policytag.training.train import TrainConfig, build_encoder

    tokenizer, model = build_encoder(TrainConfig(base_model=str(tiny_model), frozen_layers=1), BOOK,
                                     len(BOOK.flat_labels), torch.device("cpu"))
    model.eval()
    batch = tokenizer(["加强基层医疗卫生人才队伍建设。", "推进分级诊疗。"], padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # a padded row
    with torch.no_grad():
        full = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        hidden = model.hidden_after(1, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        continued = model.forward_from(1, hidden, batch["attention_mask"])
    assert torch.allclose(full, continued, atol=1e-5)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("encoder.encoder.layer.0.") for n in frozen)
    assert not any(n.startswith("encoder.encoder.layer.1.") for n in frozen)


def test_training_with_frozen_layers_changes_only_the_layers_above(tiny_model, small_export, tmp_path):
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "model"
    result = train_cli(["--data", small_export, "--base-model", tiny_model, "--out", out, "--epochs", 1,
                        "--max-length", 64, "--cv", 0, "--frozen-layers", 1])
    assert result.exit_code == 0, result.output
    before, after = load_file(tiny_model / "model.safetensors"), load_file(out / "encoder" / "model.safetensors")
    lower = [k for k in before if ".layer.0." in k]
    upper = [k for k in before if ".layer.1." in k]
    assert lower and upper
    assert all(torch.equal(before[k], after[k]) for k in lower)
    assert not all(torch.equal(before[k], after[k]) for k in upper)
    result = train_cli(["--data", small_export, "--base-model", tiny_model, "--out", tmp_path / "m2", "--epochs", 1,
                        "--cv", 0, "--frozen-layers", 2])
    assert result.exit_code == 2 and "frozen layers must be fewer than the base model's 2 layers" in result.output


def test_long_paragraphs_are_read_in_windows_that_cover_every_token(tiny_model):
    """With windows, a paragraph's probabilities are the highest over windows that together hold
    every token, so a cue past max_length counts; short paragraphs read the same either way."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from policytag.models.tagger import EncoderBackend, encoder_classifier

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = encoder_classifier(AutoModel.from_pretrained(tiny_model), 6).eval()
    truncating = EncoderBackend(tokenizer, 32, model=model, device=torch.device("cpu"))
    windowed = EncoderBackend(tokenizer, 32, model=model, device=torch.device("cpu"), windows=True)
    long = "各级卫生健康行政部门要加强基层医疗卫生机构建设，" * 5 + "推进家庭医生签约服务，落实分级诊疗。"
    other_tail = long[:-18] + "完善医疗保险支付方式改革措施。"
    texts = ["推进分级诊疗。", long, other_tail]
    enc, owner = windowed.features(texts, None)
    assert owner.tolist() == [0] + [1] * (owner == 1).sum() + [2] * (owner == 2).sum() and (owner == 1).sum() >= 3
    # the windows of the long paragraph, specials removed and overlaps dropped, are its whole token sequence
    whole = tokenizer(long, add_special_tokens=False)["input_ids"]
    parts = [enc["input_ids"][i][1:-1] for i in np.flatnonzero(owner == 1)]
    stitched = parts[0] + [t for p in parts[1:] for t in p[32 // 8:]]
    assert stitched == whole
    seen = []
    w = windowed.predict_proba(texts, None, progress=seen.append)
    t = truncating.predict_proba(texts, None)
    assert sum(seen) == 3
    assert np.allclose(w[0], t[0], atol=1e-6)
    each = truncating.predict_proba([tokenizer.decode(p) for p in parts], None)
    assert np.allclose(w[1], each.max(0), atol=1e-5)
    assert np.allclose(t[1], t[2], atol=1e-6)  # truncated, the different tails are never read
    assert not np.allclose(w[1], w[2], atol=1e-4)


def test_windows_are_saved_with_the_model_and_onnx_reads_them_too(tiny_model, small_export, tmp_path):
    out = tmp_path / "model"
    result = train_cli(["--data", small_export, "--base-model", tiny_model, "--out", out, "--epochs", 1,
                        "--max-length", 32, "--cv", 0, "--long-paragraphs", "windows"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "policytag.json").read_text(encoding="utf-8"))
    assert config["long_paragraphs"] == "windows"
    assert "overlapping 32-token windows" in (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    texts = ["推进家庭医生签约服务。", "加强基层医疗卫生机构人才队伍建设，落实全科医生培养。" * 4]
    tagger = load_model(out)
    assert tagger.encoder.windows
    torch_probs = tagger.predict_proba(texts)
    assert runner.invoke(app, ["export-onnx", "--model", str(out)]).exit_code == 0
    assert np.allclose(torch_probs, load_model(out, backend="onnx-fp32").predict_proba(texts), atol=1e-4)
    # a directory from before windows existed reads the first max_length tokens, as it was evaluated
    del config["long_paragraphs"]
    (out / "policytag.json").write_text(json.dumps(config), encoding="utf-8")
    old = load_model(out)
    assert not old.encoder.windows
    assert not np.allclose(old.predict_proba(texts)[1], torch_probs[1], atol=1e-4)
    result = train_cli(["--data", small_export, "--base-model", tiny_model, "--out", tmp_path / "m2",
                        "--long-paragraphs", "split"])
    assert result.exit_code == 2 and "--long-paragraphs must be one of windows, truncate" in result.output


def test_label_attention_starts_from_the_mean_and_saves_loads_and_exports(tiny_model, small_export, tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from policytag.models.onnx import export_onnx
    from policytag.models.tagger import encoder_classifier

    encoder, tokenizer = AutoModel.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_model)
    mean = encoder_classifier(encoder, 5).eval()
    attention = encoder_classifier(encoder, 5, pooling="label-attention").eval()
    attention.head.load_state_dict(mean.head.state_dict())
    batch = tokenizer(["推进家庭医生签约服务。", "加强基层医疗卫生机构人才队伍建设，完善激励机制。"], padding=True, return_tensors="pt")
    with torch.no_grad():  # zero queries: every label weighs the tokens equally, which is the mean
        assert torch.allclose(mean(**batch), attention(**batch), atol=1e-5)
        attention.queries.normal_()
        assert not torch.allclose(mean(**batch), attention(**batch), atol=1e-3)
    out = tmp_path / "att"
    result = train_cli(["--model", "encoder", "--pooling", "label-attention", "--cv", 0, "--epochs", 1, "--max-length", 48,
                        "--data", small_export, "--base-model", tiny_model, "--out", out])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "policytag.json").read_text())["pooling"] == "label-attention"
    assert "label-wise attention pooling" in (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    tagger = load_model(out, device="cpu")
    assert tagger.encoder.model.queries.abs().sum() > 0  # the queries were trained and saved
    texts = ["推进家庭医生签约服务。", "加强基层医疗卫生机构人才队伍建设，完善激励机制，提高服务能力。"]
    probs = tagger.predict_proba(texts)
    export_onnx(tagger)
    assert np.allclose(probs, load_model(out, backend="onnx-fp32").predict_proba(texts), atol=1e-4)
    bad = train_cli(["--model", "encoder", "--pooling", "max", "--data", small_export, "--base-model", tiny_model,
                     "--out", tmp_path / "bad"])
    assert bad.exit_code == 2 and "--pooling must be one of mean, label-attention" in bad.output


def test_asymmetric_loss_matches_the_paper_and_trains(tiny_model, small_export, tmp_path):
    import torch

    from policytag.training.train import asymmetric_loss

    logits = torch.tensor([[2.0, -1.0, -4.0, 0.5]])
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    p = torch.sigmoid(logits)
    # positives: log p; negatives: max(p - 0.05, 0)^4 * log(1 - max(p - 0.05, 0)); sigmoid(-4) < 0.05 costs nothing
    p_m = (p - 0.05).clamp(min=0)
    by_hand = -(torch.log(p[0, 0]) + torch.log(p[0, 1]) + p_m[0, 3] ** 4 * torch.log(1 - p_m[0, 3])) / 4
    assert torch.allclose(asymmetric_loss()(logits, targets), by_hand, atol=1e-6)
    easy = torch.tensor([[-4.0]], requires_grad=True)
    asymmetric_loss()(easy, torch.zeros(1, 1)).backward()
    assert easy.grad.abs().item() == 0.0
    out = tmp_path / "asl"
    result = train_cli(["--model", "encoder", "--loss", "asymmetric", "--cv", 0, "--epochs", 1, "--max-length", 48,
                        "--data", small_export, "--base-model", tiny_model, "--out", out])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "training_config.json").read_text())["loss"] == "asymmetric"
    assert "asymmetric loss" in (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    bad = train_cli(["--model", "encoder", "--loss", "focal", "--data", small_export, "--base-model", tiny_model,
                     "--out", tmp_path / "bad"])
    assert bad.exit_code == 2 and "--loss must be one of bce, asymmetric" in bad.output
