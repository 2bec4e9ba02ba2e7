"""The bundled GGUF's conversion: the weights the pipeline trains are the GGUF's, dequantized, and the file is
parsed once per conversion."""
from __future__ import annotations

import numpy as np
import pytest

from tasks.engines.models import _gguf_parsed_once, bundled_gguf


def test_converted_weights_are_the_gguf_tensors_dequantized(bundled_model_dir):
    from gguf import GGUFReader, dequantize
    from safetensors.numpy import load_file

    reader = GGUFReader(bundled_gguf("smollm2-135m-instruct"))
    gguf_tensors = {t.name: t for t in reader.tensors}
    saved = load_file(bundled_model_dir / "model.safetensors")
    # Names whose layout llama.cpp keeps (q/k are permuted for its rotary layout, so they are left out).
    for gguf_name, hf_name in [("token_embd.weight", "model.embed_tokens.weight"),
                               ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight"),
                               ("blk.29.attn_v.weight", "model.layers.29.self_attn.v_proj.weight"),
                               ("output_norm.weight", "model.norm.weight")]:
        t = gguf_tensors[gguf_name]
        expected = dequantize(t.data, t.tensor_type).reshape(saved[hf_name].shape)
        np.testing.assert_array_equal(saved[hf_name], expected.astype(np.float32), err_msg=hf_name)


def test_gguf_parsed_once_memoizes_within_the_block_and_restores(monkeypatch):
    import gguf

    calls = []

    def counting_reader(path, *args):
        calls.append(path)
        return object()

    monkeypatch.setattr(gguf, "GGUFReader", counting_reader)
    with _gguf_parsed_once():
        first, second = gguf.GGUFReader("/m.gguf"), gguf.GGUFReader("/m.gguf")
        gguf.GGUFReader("/other.gguf")
        name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is name_map
    assert first is second and calls == ["/m.gguf", "/other.gguf"]
    assert gguf.GGUFReader is counting_reader  # restored on exit
    assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is not name_map


def test_gguf_parsed_once_restores_after_an_error(monkeypatch):
    import gguf

    original = gguf.GGUFReader
    with pytest.raises(RuntimeError), _gguf_parsed_once():
        raise RuntimeError("conversion failed")
    assert gguf.GGUFReader is original
