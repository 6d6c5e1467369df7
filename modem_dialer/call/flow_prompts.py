"""Turning a flow's prompt items into samples: ``say:`` text (placeholders filled, espeak-ng),
WAV files, pauses and tones. Rendered prompts are kept per call so a retry costs nothing,
and the ones that depend only on the contact are rendered before the call is placed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.prompts import load_prompt, silence
from ..audio.source import TELEPHONE_DBFS, message_samples
from .flow_model import Flow, PromptItem, placeholders


class _Blank(dict):
    # a field missing at run time is said as nothing rather than failing the call
    def __missing__(self, key: str) -> str:
        return ""


def fill(text: str, values: Mapping[str, Any]) -> str:
    return text.format_map(_Blank({k: "" if v is None else v for k, v in values.items()}))


def tone(hz: float, ms: int, dbfs: float = -16.0) -> np.ndarray:
    t = np.arange(round(8 * ms)) / 8000
    ramp = np.minimum(1.0, np.minimum(t, t[::-1] if len(t) else t) / 0.01)   # 10 ms fades: no clicks
    return np.round(32767 * 10 ** (dbfs / 20) * np.sqrt(2) * np.sin(2 * np.pi * hz * t) * ramp).astype(np.int16)


class PromptRenderer:
    def __init__(self, flow: Flow, voice: str, cache_dir: str | Path | None) -> None:
        self.flow = flow
        self.voice = voice
        self.cache_dir = cache_dir
        self._memo: dict[tuple, np.ndarray] = {}

    def _one(self, item: PromptItem, values: Mapping[str, Any]) -> np.ndarray:
        if item.say is not None:
            text = fill(item.say, values)
            key = ("say", text)
            if key not in self._memo:
                self._memo[key] = message_samples(say=text, voice=self.voice, cache_dir=self.cache_dir) \
                    if text.strip() else silence(0)
            return self._memo[key]
        if item.wav is not None:
            key = ("wav", item.wav)
            if key not in self._memo:
                self._memo[key] = load_prompt(self.flow.resolve(item.wav), TELEPHONE_DBFS).samples
            return self._memo[key]
        if item.silence_ms is not None:
            return silence(item.silence_ms)
        return tone(item.tone_hz or 440.0, item.tone_ms)

    def render_sync(self, items: Iterable[PromptItem], values: Mapping[str, Any]) -> np.ndarray:
        parts = [self._one(i, values) for i in items]
        return np.concatenate(parts) if parts else silence(0)

    async def render(self, items: Iterable[PromptItem], values: Mapping[str, Any]) -> np.ndarray:
        items = list(items)
        if all(self._cached(i, values) for i in items):
            return self.render_sync(items, values)
        # espeak-ng and WAV decoding block: keep the event loop (other lines' audio) running
        return await asyncio.to_thread(self.render_sync, items, values)

    def _cached(self, item: PromptItem, values: Mapping[str, Any]) -> bool:
        if item.say is not None:
            return ("say", fill(item.say, values)) in self._memo
        if item.wav is not None:
            return ("wav", item.wav) in self._memo
        return True

    def prerender(self, groups: Iterable[Iterable[PromptItem]], known: Mapping[str, Any]) -> None:
        """Render every item whose placeholders are all in ``known`` (before the call)."""
        for items in groups:
            for item in items:
                if item.say is not None and not set(placeholders(item.say)) <= set(known):
                    continue
                self._one(item, known)
