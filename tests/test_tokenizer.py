"""The one padding-id fallback used by every batch builder."""

from types import SimpleNamespace

from mftlab.models.tokenizer import build_char_tokenizer, padding_id


def test_padding_id_prefers_pad_then_eos_then_zero():
    tok = build_char_tokenizer()
    assert padding_id(tok) == tok.pad_token_id == 0
    tok.pad_token = None  # many causal-LM tokenizers have no pad token
    assert tok.pad_token_id is None and padding_id(tok) == tok.eos_token_id == 2
    assert padding_id(SimpleNamespace(pad_token_id=None, eos_token_id=None)) == 0
    assert padding_id(None) == 0
