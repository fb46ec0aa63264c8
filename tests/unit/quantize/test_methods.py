"""Method names: the fixed ones, any llama.cpp type as gguf-TYPE, and clear errors otherwise."""

from __future__ import annotations

import pytest

from honed.errors import HonedError
from honed.quantize.methods import METHODS, method_for


def test_every_issue_method_is_known():
    for name in ("int8", "int8-dynamic", "int4-weight", "nf4", "onnx", "onnx-int8"):
        assert method_for(name) is METHODS[name]
    for name in ("gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "gguf-q5_k_m", "gguf-Q6_K"):
        method = method_for(name)
        assert method.format == "gguf" and method.backend == "llama.cpp"
        assert not method.seq2seq


def test_unknown_methods_get_one_line_that_lists_the_choices():
    with pytest.raises(HonedError, match="unknown quantization method 'int3'.*gguf-q4_k_m"):
        method_for("int3")
    with pytest.raises(HonedError, match="llama.cpp has no quantization type 'q9_z'"):
        method_for("gguf-q9_z")


def test_an_int4_group_size_without_a_cpu_kernel_gets_a_note():
    from honed.config import QuantizeConfig
    from honed.quantize.stage import _notes

    def notes(method: str, group: int) -> list[str]:
        return _notes(QuantizeConfig(model="m", method=method, group_size=group))

    assert notes("int4-weight", 32) == [] and notes("int8", 16) == []
    (line,) = notes("int4-weight", 16)
    assert "group size 16" in line and "--group-size 32" in line
