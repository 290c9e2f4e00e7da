"""Shared fixtures. Real data lives in ../shared beside the repository; tests that need it
skip with a loud reason when it is absent."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EXAMPLES = ROOT / "examples" / "docs"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"SHARED DATA MISSING: {path} (clone the repo next to ../shared)")
    return path


@pytest.fixture
def shared():
    return shared_path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer, 64-wide BERT with the real Chinese vocabulary, randomly initialised."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = shared_path("models", "m3e-small", "vocab.txt")
    tok = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tfidf_model(tmp_path_factory):
    """The TF-IDF baseline trained on the shared annotations (seconds), shared by the suite."""
    from typer.testing import CliRunner

    from policytag import app

    out = tmp_path_factory.mktemp("models") / "tfidf"
    # --cv 0: the suite needs a working model, not its out-of-fold estimate (tested on its own)
    result = CliRunner().invoke(app, ["train", "--model", "tfidf", "--cv", "0", "--data",
                                      str(shared_path("data", "annotations", "ihms-train.json")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out
