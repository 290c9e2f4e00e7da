"""ONNX export of a fine-tuned tagger and int8 dynamic quantisation, for faster CPU serving.

`optimum-onnx` needs transformers<4.58, so the export uses `torch.onnx.export(dynamo=False)`
directly; the graph outputs sigmoid probabilities so both backends return the same thing."""
from __future__ import annotations

from pathlib import Path

import torch

FP32, INT8 = "model.onnx", "model.int8.onnx"


class _Probabilities(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return torch.sigmoid(self.model(input_ids, attention_mask, token_type_ids))


def export_onnx(tagger, quantize: bool = True) -> list[Path]:
    """Write model.onnx (and model.int8.onnx) into the directory `tagger` was loaded from (load it
    with device="cpu"). Takes the loaded tagger, so this module never imports models.tagger."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from policytag.files import atomic_path

    model_dir = Path(tagger.path)
    encoder = tagger.encoder
    if encoder is None:
        raise ValueError(f"{model_dir}: this model has no fine-tuned encoder to export (kind {tagger.kind!r})")
    enc = encoder.tokenizer(["卫生健康委员会", "加强基层医疗卫生机构建设"], ["推进", "分级诊疗"], padding=True, return_tensors="pt")
    args = (enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids", torch.zeros_like(enc["input_ids"])))
    dynamic = {0: "batch", 1: "tokens"}
    written = []
    with atomic_path(model_dir / FP32) as tmp:
        torch.onnx.export(_Probabilities(encoder.model).eval(), args, str(tmp), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["probs"],
                          dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "token_type_ids": dynamic,
                                        "probs": {0: "batch"}})
    written.append(model_dir / FP32)
    if quantize:
        with atomic_path(model_dir / INT8) as tmp:
            quantize_dynamic(str(model_dir / FP32), str(tmp), weight_type=QuantType.QInt8)
        written.append(model_dir / INT8)
    return written


def open_session(model_dir: Path, quantized: bool = True, threads: int = 1):
    import onnxruntime as ort

    path = Path(model_dir) / (INT8 if quantized else FP32)
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run `policytag export-onnx --model {model_dir}` first")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
