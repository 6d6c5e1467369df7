"""Answering-machine detection: the energy state machine of Asterisk ``app_amd``.

(rules_and_signals.md B.2.1; behaviour re-implemented from its documentation and
parameters, not copied.) Each 20 ms frame is silence when its mean absolute amplitude is
below ``silence_threshold``. Humans say a short "Hello?" then wait; machines start after a
long silence, speak long, or say many words. Defaults are app_amd's; tune the silence
threshold on real GSM answers (comfort noise raises the floor).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

FRAME_MS = 20


class Verdict(enum.Enum):
    HUMAN = "HUMAN"
    MACHINE = "MACHINE"
    NOTSURE = "NOTSURE"


@dataclass(frozen=True)
class AmdParams:
    initial_silence_ms: int = 2500
    greeting_ms: int = 1500
    after_greeting_silence_ms: int = 800
    total_analysis_ms: int = 5000
    min_word_length_ms: int = 100
    between_words_silence_ms: int = 50
    maximum_number_of_words: int = 2  # a third word means machine
    silence_threshold: int = 256  # mean |sample|, 0..32767
    maximum_word_length_ms: int = 5000


@dataclass(frozen=True)
class AmdResult:
    verdict: Verdict
    reason: str  # app_amd's AMDCAUSE style: rule and numbers
    at_ms: int  # audio time of the decision since the first frame


class AnsweringMachineDetector:
    """Feed 20 ms frames of the callee's audio; ``feed`` returns the verdict once, then None."""

    def __init__(self, params: AmdParams | None = None) -> None:
        self.params = params or AmdParams()
        self.result: AmdResult | None = None
        self._total = 0
        self._silence = 0  # current run of silence, ms
        self._voice = 0  # voice so far in the greeting, ms
        self._word_run = 0  # current run of voice, ms
        self._words = 0
        self._in_word = True  # app_amd starts "in word": leading silence must end it first
        self._in_initial_silence = True
        self._in_greeting = False

    def feed(self, frame: np.ndarray) -> AmdResult | None:
        if self.result is not None:
            return None
        p = self.params
        ms = round(len(frame) * 1000 / 8000) or FRAME_MS
        self._total += ms
        level = float(np.abs(np.asarray(frame, dtype=np.int32)).mean()) if len(frame) else 0.0
        if level < p.silence_threshold:
            self._silence += ms
            if self._silence >= p.between_words_silence_ms:
                self._in_word = False
                self._word_run = 0
            if self._in_initial_silence and self._silence >= p.initial_silence_ms:
                return self._decide(Verdict.MACHINE, f"INITIALSILENCE-{self._silence}-{p.initial_silence_ms}")
            if self._in_greeting and self._silence >= p.after_greeting_silence_ms:
                return self._decide(Verdict.HUMAN, f"HUMAN-{self._silence}-{p.after_greeting_silence_ms}")
        else:
            self._silence = 0
            self._word_run += ms
            self._voice += ms
            if self._word_run >= p.min_word_length_ms and not self._in_word:
                self._words += 1
                self._in_word = True
            if self._word_run >= p.maximum_word_length_ms:
                return self._decide(
                    Verdict.MACHINE, f"MAXWORDLENGTH-{self._word_run}-{p.maximum_word_length_ms}"
                )
            if self._words > p.maximum_number_of_words:
                return self._decide(Verdict.MACHINE, f"MAXWORDS-{self._words}-{p.maximum_number_of_words}")
            if self._in_greeting and self._voice >= p.greeting_ms:
                return self._decide(Verdict.MACHINE, f"LONGGREETING-{self._voice}-{p.greeting_ms}")
            if self._voice >= p.min_word_length_ms:
                self._in_initial_silence = False
                self._in_greeting = True
        if self._total >= p.total_analysis_ms:
            return self._decide(Verdict.NOTSURE, f"TOOLONG-{self._total}")
        return None

    def _decide(self, verdict: Verdict, reason: str) -> AmdResult:
        self.result = AmdResult(verdict, reason, self._total)
        return self.result
