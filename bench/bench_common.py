"""Shared by the benches: make every run the same length."""

from __future__ import annotations

from typing import Any


def disable_eos(engine: Any) -> None:
    """Every reply of ``engine`` runs to max_new_tokens: its generation configs (for the
    values asked, the lens's neutral one included) carry no EOS."""
    with_eos = engine.generation_config

    def without_eos(params: Any) -> Any:
        config = with_eos(params)
        config.eos_token_id = None
        return config

    engine.generation_config = without_eos
    # generate() fills a value left unset from the model's own generation config, so the
    # EOS has to go from there too (else the reply still ends at the first EOS).
    engine.model.generation_config.eos_token_id = None
