"""The devnet converts SmolLM2's GGUF file once, in a process of its own, into the shared
model cache, before any generation process starts; a second devnet finds it and converts
nothing. The converted weights are the real model: it answers a known question."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agora.devnet import Devnet, DevnetConfig, Processes, prepare_models
from agora.tasks.generation_model import SmolLM2Backend, get_converted_model_dir


def prepare(tmp_path: Path, cache: Path, said: list[str]) -> Devnet:
    (tmp_path / "logs").mkdir(exist_ok=True)
    config = DevnetConfig(
        data_dir=tmp_path, cache_dir=cache, tasks=("generation",), say=said.append
    )
    devnet = Devnet(config=config, processes=Processes(tmp_path / "logs"))
    asyncio.run(prepare_models(devnet, asyncio.Event()))
    return devnet


@pytest.mark.slow
def test_the_devnet_converts_the_model_once_into_the_shared_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    said: list[str] = []
    devnet = prepare(tmp_path, cache, said)
    assert [line.split()[1] for line in said] == ["converting", "converted"], said
    assert devnet.processes.children == []  # the conversion process is gone
    converted = get_converted_model_dir(cache)
    weights = converted / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert not list(cache.glob(".*tmp-*"))  # no temporary directory left behind

    again: list[str] = []
    second = prepare(tmp_path, cache, again)
    assert len(again) == 1 and "cached in" in again[0] and str(converted) in again[0], again
    assert second.processes.children == []
    assert weights.stat().st_mtime_ns == written

    async def ask() -> str:
        backend = await SmolLM2Backend.load(cache)
        try:
            question = [{"role": "user", "content": "What is the capital of France?"}]
            result = await backend.chat(question, max_tokens=12, temperature=0.0)
            return result.text
        finally:
            await backend.close()

    assert "Paris" in asyncio.run(ask())


def test_a_devnet_without_generation_converts_nothing(tmp_path: Path) -> None:
    said: list[str] = []
    config = DevnetConfig(data_dir=tmp_path, cache_dir=tmp_path / "cache", tasks=("embedding",))
    config.say = said.append
    devnet = Devnet(config=config, processes=Processes(tmp_path))
    asyncio.run(prepare_models(devnet, asyncio.Event()))
    assert said == [] and not (tmp_path / "cache").exists()
