"""policytag: tag paragraphs of Chinese health-policy documents with the policy tools they use,
the stakeholders they address and the orientation they serve.

One import namespace; each subpackage is one of the repository's top-level folders
(setuptools `package-dir` in pyproject.toml maps them):

- `policytag.nlp`: read documents, split paragraphs, document metadata
- `policytag.labels`: codebooks, Label Studio round trip, agreement
- `policytag.training`: cross-validation, training, metrics, model cards
- `policytag.models`: the tagger (encoder, TF-IDF, ensemble backends), batch tagging, ONNX
- `policytag.report`: the 6D and medical-security tables, charts, comparison with the papers
- `policytag.serve`: the HTTP service and the analysts' page
- `policytag.cli`: the `policytag` command (a thin layer over the above)
- `policytag.files`, `policytag.nlp.tagsfile`: atomic file I/O and the tags-file format

Importing this package stays cheap: nothing heavy (torch, transformers, scikit-learn) is
imported until a command needs it."""

__version__ = "0.1.0"
